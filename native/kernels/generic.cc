// The portable kernel: plain C++ that the compiler vectorizes for any CPU of the architecture
// (SSE2 on x86-64, NEON on arm64); its tuning is tuning_generic.h.
#include "tuning_generic.h"
#define BIRNN_ISA generic
#define BIRNN_ISA_ENUM Generic
#define BIRNN_KERNELS kernelsGeneric
#define BIRNN_TUNING GenericTuning
#define BIRNN_VECTOR_TYPES 0
#include "kernel_impl.h"
