// The AVX2 kernel. Only this file is compiled with -mavx2 -mfma; its tuning is tuning_avx2.h.
#include "tuning_avx2.h"
#define BIRNN_ISA avx2
#define BIRNN_ISA_ENUM Avx2
#define BIRNN_KERNELS kernelsAvx2
#define BIRNN_TUNING Avx2Tuning
#define BIRNN_VECTOR_TYPES 1
#define BIRNN_X86_BITS 256
#include "kernel_impl.h"
