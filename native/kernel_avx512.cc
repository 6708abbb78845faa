// The avx512 kernel. Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma (this file only): 32 zmm registers.
#define BIRNN_ISA avx512
#define BIRNN_LANES 16
#define BIRNN_ACCUMULATORS 24
#define BIRNN_VECTOR_TYPES 1
#include "kernel_impl.h"

namespace birnn::detail {
const Kernels& kernelsAvx512() {
  static constexpr Kernels kernels{Isa::Avx512, avx512::L, avx512::gemm, avx512::step, avx512::apply<avx512::vtanh>,
                                   avx512::apply<avx512::vsigmoid>};
  return kernels;
}
}  // namespace birnn::detail
