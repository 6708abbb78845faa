// The NEON kernel (AArch64 Advanced SIMD, 4 floats a vector, 32 registers); its tuning is
// tuning_neon.h. NEON is part of the AArch64 baseline, so no flags are needed and every arm64 CPU
// runs it. Built on every architecture (CMakeLists.txt) but empty off AArch64, so a multi-arch
// build (macOS universal) still gets it on the arm64 slice only.
#if defined(__aarch64__)
#include "tuning_neon.h"
#define BIRNN_ISA neon
#define BIRNN_ISA_ENUM Neon
#define BIRNN_KERNELS kernelsNeon
#define BIRNN_TUNING NeonTuning
#define BIRNN_VECTOR_TYPES 1
#include "kernel_impl.h"
#endif
