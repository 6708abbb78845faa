// The portable kernel: plain C++ that the compiler vectorizes for any CPU of the architecture
// (SSE2 on x86-64, NEON on arm64).
#define BIRNN_ISA generic
#define BIRNN_ISA_ENUM Generic
#define BIRNN_KERNELS kernelsGeneric
#define BIRNN_LANES 4
#define BIRNN_ACCUMULATORS 12
#define BIRNN_VECTOR_TYPES 0
#include "kernel_impl.h"
