// The WebAssembly kernel: kernel_impl.h on 128-bit wasm SIMD vectors. Not an ISA of the native
// addon (spec.h's kIsas): scripts/build-wasm.mjs compiles it, with -msimd128, only into
// wasm/birnn.wasm, where native/wasm_api.cc builds every Network on it. Its tuning is
// tuning_wasm.h. wasm SIMD has no fused multiply-add, so each term of a sum is a multiply and
// an add (two roundings, as the portable kernel on SSE2): the order of the sum, and so the
// independence of results from the row split, is the same as on every other path.
#include "tuning_wasm.h"
#define BIRNN_ISA wasm
#define BIRNN_ISA_ENUM Generic  // the table's Isa field; wasm has no Isa of its own
#define BIRNN_KERNELS kernelsWasm
#define BIRNN_TUNING WasmTuning
#define BIRNN_VECTOR_TYPES 1
#include "kernel_impl.h"
