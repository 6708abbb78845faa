// The avx2 kernel. Compiled with -mavx2 -mfma (this file only): 16 ymm registers.
#define BIRNN_ISA avx2
#define BIRNN_LANES 8
#define BIRNN_ACCUMULATORS 12
#define BIRNN_VECTOR_TYPES 1
#include "kernel_impl.h"

namespace birnn::detail {
const Kernels& kernelsAvx2() {
  static constexpr Kernels kernels{Isa::Avx2, avx2::L, avx2::gemm, avx2::step, avx2::apply<avx2::vtanh>,
                                   avx2::apply<avx2::vsigmoid>};
  return kernels;
}
}  // namespace birnn::detail
