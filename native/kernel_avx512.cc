// The AVX-512 kernel. Only this file is compiled with -mavx512f/bw/dq/vl -mfma: 32 zmm registers.
#define BIRNN_ISA avx512
#define BIRNN_ISA_ENUM Avx512
#define BIRNN_KERNELS kernelsAvx512
#define BIRNN_LANES 16
#define BIRNN_ACCUMULATORS 24
#define BIRNN_VECTOR_TYPES 1
#include "kernel_impl.h"
