// The WebAssembly kernel: kernel_impl.h on 128-bit wasm SIMD vectors. Not an ISA of the native
// addon (spec.h's kIsas): scripts/build-wasm.mjs compiles it twice, into wasm/birnn.wasm
// (-msimd128) and wasm/birnn-relaxed.wasm (-mrelaxed-simd as well), where native/wasm_api.cc
// builds every Network on it. Its tuning is tuning_wasm.h.
// - 128-bit SIMD has no fused multiply-add: each term of a sum is a multiply and an add (two
//   roundings, as the portable kernel on SSE2), the same on every machine.
// - Relaxed SIMD's f32x4.relaxed_madd is the host's FMA where it has one (on x86-64 and arm64
//   alike), at half the instructions; whether it fuses is the engine's choice per machine.
// Either way the order of the sum, and so the independence of results from the row split, is
// the same as on every other path.
#include "tuning_wasm.h"
#define BIRNN_ISA wasm
#define BIRNN_ISA_ENUM Generic  // the table's Isa field; wasm has no Isa of its own
#define BIRNN_KERNELS kernelsWasm
#define BIRNN_TUNING WasmTuning
#define BIRNN_VECTOR_TYPES 1
#include "kernel_impl.h"
