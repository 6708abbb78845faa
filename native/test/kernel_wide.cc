// The AVX-512 kernel's geometry (16 lanes, 24 accumulators) in portable code, for the kernel
// tests: it runs the same tiling, panel and tail logic as kernel_avx512.cc on any CPU, so a CPU
// without AVX-512 still checks everything but the instructions themselves.
#define BIRNN_ISA wide16
#define BIRNN_ISA_ENUM Generic
#define BIRNN_KERNELS kernelsWide16
#define BIRNN_LANES 16
#define BIRNN_ACCUMULATORS 24
#define BIRNN_VECTOR_TYPES 0
#include "../kernel_impl.h"
