// The generic kernel. Plain C++: runs on any CPU of the architecture (SSE2 on x86-64, NEON on arm64).
#define BIRNN_ISA generic
#define BIRNN_LANES 4
#define BIRNN_ACCUMULATORS 12
#define BIRNN_VECTOR_TYPES 0
#include "kernel_impl.h"

namespace birnn::detail {
const Kernels& kernelsGeneric() {
  static constexpr Kernels kernels{Isa::Generic, generic::L, generic::gemm, generic::step, generic::apply<generic::vtanh>,
                                   generic::apply<generic::vsigmoid>};
  return kernels;
}
}  // namespace birnn::detail
