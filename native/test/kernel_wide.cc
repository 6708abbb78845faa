// The AVX-512 kernel's geometry and tuning (tuning_avx512.h) in portable code, for the kernel
// tests: it runs the same tiling, panel and tail logic as kernels/avx512.cc on any CPU, so a CPU
// without AVX-512 still checks everything but the instructions themselves.
#include "kernels/tuning_avx512.h"
#define BIRNN_ISA wide16
#define BIRNN_ISA_ENUM Generic
#define BIRNN_KERNELS kernelsWide16
#define BIRNN_TUNING Avx512Tuning
#define BIRNN_VECTOR_TYPES 0
#include "kernels/kernel_impl.h"
