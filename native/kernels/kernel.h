// Internal interface between the orchestration (native/network.cc, native/forward.cc) and the
// per-ISA kernels (kernels/<isa>.cc, each one compilation of kernel_impl.h with that ISA's
// flags and tuning).
#pragma once

#include <cstddef>
#include <cstdint>

#include "birnn.h"

namespace birnn::detail {

// Vectors of each gate in a panel: a single-gate cell (RNN) gets two, so that a panel still has
// two independent accumulator chains per row (or three, where that computes fewer columns:
// geometryFor); GRU and LSTM have enough gates with one.
constexpr int gateVectors(Mode mode) { return spec::gates(mode) == 1 ? 2 : 1; }
// Vectors across a whole panel (NV): 2 RNN (or 3), 3 GRU, 4 LSTM. kernel_impl.h instantiates its
// per-mode code from this, and its gemm() has a case for each width.
constexpr int panelVectors(Mode mode) { return spec::gates(mode) * gateVectors(mode); }
// Vectors across a panel of the LSTM projection W_hr (network.cc packs it that wide).
constexpr int kProjectionVectors = 2;

// Packed weight layout, shared by the input projection and the recurrence:
// the G gate rows of PyTorch's [G*H, K] matrices are regrouped into panels of `units` hidden
// units each. Panel p holds, for k in [0, K), the PW = G * units columns
//   [gate 0: units p*units .. p*units+units-1][gate 1: same units] ... [gate G-1: same units]
// contiguously (K rows of PW floats), so one register tile of a panel holds every gate of its
// hidden units and the cell update can run straight on it. Units >= H are zero columns.
// `units` is gateVectors(mode) * lanes, so PW = panelVectors(mode) * lanes: whole vectors (for a
// single-gate cell, three vectors where geometryFor finds that computes fewer columns).
// The last panel of a single-gate cell may be narrower (one vector, `lastUnits`), when its
// hidden units fit one: the seed's RNN, H = 50 in panels of 16, then computes 56 columns, not 64.
// Every panel still starts where a full one would (p * units, p * K * PW, p * PW).
// A tail: where the last panel is one vector a gate and H % lanes is small (at most the kernel's
// Kernels::tailUnits), each of those vectors holds only those few units, and a tile would spend a
// whole vector of multiply-adds per row and k on them (an LSTM's H = 50 on AVX-512: 256 columns
// computed for 200). Those units are computed as dot products instead (TailArgs), and W's packed
// panels leave the last panel out: it packs tiledUnitsOf() = 0 units. The gate sums, P and the
// states keep the whole panel's layout.
struct PanelGeometry {
  int G = 1;          // gates per hidden unit
  int lanes = 0;      // floats per vector
  int units = 0;      // hidden units per panel
  int panels = 0;     // ceil(H / units)
  int lastUnits = 0;  // hidden units of the last panel: units, or lanes (a narrow last panel)
  int tail = 0;       // > 0: the last panel is a tail of this many units a gate
  int width() const { return G * units; }  // PW
  int unitsOf(int p) const { return p == panels - 1 ? lastUnits : units; }
  int widthOf(int p) const { return G * unitsOf(p); }
  int tiledUnitsOf(int p) const { return tail && p == panels - 1 ? 0 : unitsOf(p); }
  int tiledWidthOf(int p) const { return G * tiledUnitsOf(p); }  // packed columns of W's panel p
  int paddedUnits() const { return (panels - 1) * units + lastUnits; }  // Hp >= H
  int paddedColumns() const { return G * paddedUnits(); }
};

// The tail's columns (PanelGeometry::tail): the first `units` lanes of each gate's vector in the
// last panel, each the dot product of a row of A (K floats) with a row of `w`, summed vector by
// vector in k order and then across lanes in a fixed order, whatever the rows around it; the
// vectors' other lanes are 0.
struct TailArgs {
  int units = 0;             // 0: no tail
  int gates = 0;             // G
  const float* w = nullptr;  // row g * units + u: the K weights of gate g's unit u, zero-padded
  std::ptrdiff_t ldw = 0;    // to whole vectors (tailRowFloats)
};
inline std::ptrdiff_t tailRowFloats(int K, int lanes) { return (K + lanes - 1) / lanes * lanes; }
inline TailArgs tailArgs(const PanelGeometry& geo, const float* w, int K) {
  TailArgs t;
  if (geo.tail == 0) return t;
  t.units = geo.tail;
  t.gates = geo.G;
  t.w = w;
  t.ldw = tailRowFloats(K, geo.lanes);
  return t;
}

// C[i, :] = init + A[i, 0:K] * B for i in [0, m), over `panels` panels of `width` columns
// (B packed as above, or the projection's panels). `width` is panelVectors(mode) * lanes or
// kProjectionVectors * lanes: gemm() serves exactly those. The last panel's tiled columns,
// `lastWidth`, are `width`, or one vector (a narrow last panel), or none (a tail: TailArgs). C
// rows are `ldc` floats
// apart and every column of every panel is written. `bias` (the panels' columns) seeds C when
// given (a tail's sums are added to it); otherwise C starts at 0.
// The sum over k always runs in order 0..K-1, one fma() per term (fused where the kernel's ISA
// has it, else a multiply and an add), whatever m, the row block or the thread: results do not
// depend on how the rows are split.
struct GemmArgs {
  int m = 0, K = 0;
  const float* A = nullptr;
  std::ptrdiff_t lda = 0;
  const float* B = nullptr;
  int panels = 0, width = 0;
  int lastWidth = 0;
  TailArgs tail;
  const float* bias = nullptr;
  float* C = nullptr;
  std::ptrdiff_t ldc = 0;
};

// One time step of one direction for the m active rows: gates = P[row] + hPrev * W_hh, then the
// cell update. Rows are the batch rows still inside their sequence. Only panels [panelBegin,
// panelEnd) are computed (their gate columns and hidden units), so that threads can share a step
// by panels; every column's sum is the same whichever panels run together.
struct StepArgs {
  Mode mode = Mode::Lstm;
  PanelGeometry geo;
  int panelBegin = 0, panelEnd = 0;
  int m = 0;
  int K = 0;                      // Hout: columns of hPrev that feed W_hh
  const float* hPrev = nullptr;   // [m, ldh]
  std::ptrdiff_t ldh = 0;
  const float* Whh = nullptr;     // packed [panels][K][PW]
  TailArgs tail;                  // W_hh's tail, when the geometry has one
  const float* const* P = nullptr;  // m row pointers to the input projection (+ summed biases)
  const float* bhn = nullptr;     // GRU: b_hn, [Hp]
  float* c = nullptr;             // LSTM cell state [m, ldc], updated in place
  std::ptrdiff_t ldc = 0;
  float* hNext = nullptr;         // new hidden state [m, ldn] (LSTM with projection: the
  std::ptrdiff_t ldn = 0;         // pre-projection o * tanh(c), which W_hr then maps)
  // Null, or m row pointers: where each row's new hidden state is also written, its first
  // outUnits units only (the layer output's row, which holds no padding). Not with a projection.
  float* const* out = nullptr;
  int outUnits = 0;
};

struct Kernels {
  Isa isa;
  int lanes;      // floats per vector
  int tailUnits;  // the most units a tail takes (PanelGeometry::tail); 0: none
  void (*gemm)(const GemmArgs&);
  void (*step)(const StepArgs&);
  void (*tanh)(const float* x, float* y, std::size_t n);     // vectorized, for tests
  void (*sigmoid)(const float* x, float* y, std::size_t n);  // vectorized, for tests
};

const Kernels& kernelsGeneric();
#if defined(__x86_64__)
const Kernels& kernelsAvx2();
const Kernels& kernelsAvx512();
#endif
#if defined(__aarch64__)
const Kernels& kernelsNeon();
#endif
const Kernels& kernelsFor(Isa isa);  // throws std::invalid_argument when the CPU lacks it

// The panel geometry of a mode on an ISA with `lanes` floats per vector, whose tails take at most
// `tailUnits` units.
inline PanelGeometry geometryFor(Mode mode, int hidden, int lanes, int tailUnits) {
  auto inPanelsOf = [&](int vectors) {
    PanelGeometry g;
    g.G = spec::gates(mode);
    g.lanes = lanes;
    g.units = vectors * lanes;
    g.panels = (hidden + g.units - 1) / g.units;
    const bool narrow = g.G == 1 && hidden - (g.panels - 1) * g.units <= lanes;
    g.lastUnits = narrow ? lanes : g.units;
    // Only a last panel of one vector a gate becomes a tail: an RNN panel of two would leave its
    // first vector to tiles of one vector, which ran as slowly as the two had (the seed's RNN on
    // AVX-512, bench/RESULTS.md).
    g.tail = g.lastUnits == lanes && hidden % lanes <= tailUnits ? hidden % lanes : 0;
    return g;
  };
  const PanelGeometry usual = inPanelsOf(gateVectors(mode));
  if (spec::gates(mode) != 1) return usual;
  // A single-gate cell's panels are three vectors where that leaves fewer columns to the tiles:
  // the seed's H = 50 on AVX-512 is 48 units and a tail of 2, where two vectors computed 64.
  const PanelGeometry wide = inPanelsOf(3);
  auto tiled = [](const PanelGeometry& g) { return (g.panels - 1) * g.units + g.tiledUnitsOf(g.panels - 1); };
  return tiled(wide) < tiled(usual) ? wide : usual;
}

}  // namespace birnn::detail
