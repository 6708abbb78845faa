// NEON tuning (AArch64 Advanced SIMD), in one place: register counts and the cache budgets that
// kernel_impl.h derives every block size from (and static_asserts against). Read by
// kernels/neon.cc only.
#pragma once

#include <cstddef>

namespace birnn::detail {

struct NeonTuning {
  static constexpr int kLanes = 4;          // floats per q register
  static constexpr int kRegisters = 32;     // v0-v31
  // A register tile's sums; the rest hold its operands. Twice the SSE2/AVX2 budget, so a tile
  // is 12 rows x 2 vectors (RNN), 8 x 3 (GRU) or 6 x 4 (LSTM): each broadcast of A (one ld1r)
  // and each B vector feeds more FMAs than with 12 accumulators.
  static constexpr int kAccumulators = 24;
  static constexpr int kTailUnits = 0;  // no tails: a 4-lane vector wastes at most 3 columns
  // L1d of the arm64 servers (Neoverse N1/V1/V2: Graviton 2-4, Ampere Altra; 64 KB) and of Apple
  // silicon (128 KB): the K-block slice of a B panel takes half, the recurrence's gate sums of
  // one row block 24 KB, the rows of A the rest. (Cortex-A72/A76 boards have 32-64 KB: there the
  // gate sums spill to L2, which is still read once per row block.)
  static constexpr std::size_t kL1Bytes = 64 * 1024;
  static constexpr std::size_t kSliceBytes = 32 * 1024;
  static constexpr std::size_t kStepScratchBytes = 24 * 1024;
  // A row block of A (all of K) in the input projection: kept in L2 (1 MB per core on Neoverse,
  // 12 MB shared on Apple M1) while it is multiplied panel by panel.
  static constexpr std::size_t kRowBlockBytes = 512 * 1024;
  // The L2 of one core, at least (Neoverse's): a W_hh beyond it streams from L3 or memory.
  static constexpr std::size_t kL2Bytes = 1024 * 1024;
};

}  // namespace birnn::detail
