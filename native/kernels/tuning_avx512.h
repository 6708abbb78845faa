// AVX-512 tuning, in one place: register counts and the cache budgets that kernel_impl.h derives
// every block size from (and static_asserts against). Read by kernels/avx512.cc, and by the
// kernel tests' portable copy of this geometry (native/test/kernel_wide.cc).
#pragma once

#include <cstddef>

namespace birnn::detail {

struct Avx512Tuning {
  static constexpr int kLanes = 16;         // floats per zmm register
  static constexpr int kRegisters = 32;     // zmm0-31
  static constexpr int kAccumulators = 24;  // a register tile's sums; the rest hold its operands
  // The most units a tail takes (kernel.h's PanelGeometry): a unit's dot product is a multiply-add
  // per 16 k and a sum across lanes, its column in a tile one per k.
  static constexpr int kTailUnits = 4;
  // L1d of Ice Lake, Sapphire Rapids and Zen 5 (Skylake-X and Zen 4 have 32 KB: there the gate
  // sums live in L2, and W_hh is still read once per row block). The K-block slice of a B panel
  // takes 16 KB, the recurrence's gate sums of one row block 24 KB, the rows of A the rest.
  static constexpr std::size_t kL1Bytes = 48 * 1024;
  static constexpr std::size_t kSliceBytes = 16 * 1024;
  static constexpr std::size_t kStepScratchBytes = 24 * 1024;
  // A row block of A (all of K) in the input projection: kept in L2 while it is multiplied
  // panel by panel.
  static constexpr std::size_t kRowBlockBytes = 256 * 1024;
  // The L2 of one core, at least (Skylake-SP's; later Xeons have 2 MB): a W_hh beyond it streams
  // from L3 or memory.
  static constexpr std::size_t kL2Bytes = 1024 * 1024;
};

}  // namespace birnn::detail
