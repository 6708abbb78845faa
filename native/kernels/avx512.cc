// The AVX-512 kernel. Only this file is compiled with -mavx512f/bw/dq/vl -mfma; its tuning is
// tuning_avx512.h.
#include "tuning_avx512.h"
#define BIRNN_ISA avx512
#define BIRNN_ISA_ENUM Avx512
#define BIRNN_KERNELS kernelsAvx512
#define BIRNN_TUNING Avx512Tuning
#define BIRNN_VECTOR_TYPES 1
#define BIRNN_X86_BITS 512
#include "kernel_impl.h"
