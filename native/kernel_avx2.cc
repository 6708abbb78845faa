// The AVX2 kernel. Only this file is compiled with -mavx2 -mfma: 16 ymm registers.
#define BIRNN_ISA avx2
#define BIRNN_ISA_ENUM Avx2
#define BIRNN_KERNELS kernelsAvx2
#define BIRNN_LANES 8
#define BIRNN_ACCUMULATORS 12
#define BIRNN_VECTOR_TYPES 1
#include "kernel_impl.h"
