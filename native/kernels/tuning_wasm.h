// WebAssembly SIMD tuning, in one place: register counts and the cache budgets that
// kernel_impl.h derives every block size from (and static_asserts against). Read by
// kernels/wasm.cc only, which scripts/build-wasm.mjs compiles with -msimd128 for wasm32.
#pragma once

#include <cstddef>

namespace birnn::detail {

struct WasmTuning {
  static constexpr int kLanes = 4;  // floats per v128
  // A wasm function has unlimited locals, but the engine maps them onto the host's vector
  // registers: 16 xmm on x86-64 (V8, JavaScriptCore and SpiderMonkey alike), 32 on arm64. Sized
  // for the smaller file so that a register tile never spills on either.
  static constexpr int kRegisters = 16;
  // A register tile's sums. Fewer than AVX2's 12: V8 spills 12-sum tiles on x86-64. Without a
  // fused multiply-add every product needs a register of its own before it is added: there 8
  // measured 25-35% faster than 12 at batch 64 and no slower at batch 1 (10 and 9 in between).
  // With relaxed SIMD's fused one, 9 (a GRU tile of 3 rows) runs GRU at batch 64 15-20% faster
  // than 8 and leaves the other tiles as they were; 12 spills.
#if defined(__wasm_relaxed_simd__)
  static constexpr int kAccumulators = 9;
#else
  static constexpr int kAccumulators = 8;
#endif
  static constexpr int kTailUnits = 0;  // no tails: a 4-lane vector wastes at most 3 columns
  // The host's caches, as for the portable kernel: a 32 KB L1d of which the K-block slice of a
  // B panel takes half and the recurrence's gate sums of one row block most of the rest.
  static constexpr std::size_t kL1Bytes = 32 * 1024;
  static constexpr std::size_t kSliceBytes = 16 * 1024;
  static constexpr std::size_t kStepScratchBytes = 12 * 1024;
  // A row block of A (all of K) in the input projection: kept in L2 while it is multiplied
  // panel by panel.
  static constexpr std::size_t kRowBlockBytes = 256 * 1024;
  // The L2 of one core, at least: a W_hh beyond it streams from L3 or memory.
  static constexpr std::size_t kL2Bytes = 256 * 1024;
};

}  // namespace birnn::detail
