// Portable-kernel tuning, in one place: register counts and the cache budgets that
// kernel_impl.h derives every block size from (and static_asserts against). Read by
// kernels/generic.cc only.
#pragma once

#include <cstddef>

namespace birnn::detail {

struct GenericTuning {
  static constexpr int kLanes = 4;          // floats per SSE2 / NEON register
  static constexpr int kRegisters = 16;     // xmm0-15 (NEON has 32)
  static constexpr int kAccumulators = 12;  // a register tile's sums; the rest hold its operands
  static constexpr int kTailUnits = 0;      // no tails: a 4-lane vector wastes at most 3 columns
  // A small L1d: the K-block slice of a B panel takes half, the recurrence's gate sums of one
  // row block most of the rest, the rows of A what remains.
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
