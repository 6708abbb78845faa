// The kernel body, compiled once per instruction set: kernels/<isa>.cc includes its tuning
// header (tuning_<isa>.h: lanes, registers, cache budgets) and defines
//   BIRNN_ISA           the namespace of this copy (generic, avx2, avx512, neon),
//   BIRNN_ISA_ENUM      its Isa enumerator, and BIRNN_KERNELS the accessor that returns its table,
//   BIRNN_TUNING        its tuning struct,
//   BIRNN_VECTOR_TYPES  1: GCC/Clang vector types (the AVX files, compiled with -mavx2/-mavx512f,
//                       and the NEON file, whose ISA is the AArch64 baseline);
//                       0: plain C++ arrays in fixed-size loops that the compiler vectorizes,
// then includes this file once. Every block size below is derived from the tuning, and
// static_asserts hold the couplings. Everything here has internal linkage, and nothing here
// calls an inline function of a shared header at run time (spec.h and kernel.h are only used
// in constant expressions): an out-of-line copy compiled with AVX-512 flags could otherwise be
// picked by the linker for callers on a CPU without it.
//
// SIMD contract: loads and stores are unaligned (memcpy); packed panels are PW = NV * kLanes
// floats wide, so no column tail exists; row tails run the same code with fewer rows; every
// padded column holds zeros (network.cc packs them) and every work buffer row is padded to whole
// vectors (forward.cc sizes them).

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernel.h"

namespace birnn::detail::BIRNN_ISA {
namespace {

using Tuning = BIRNN_TUNING;
constexpr int kLanes = Tuning::kLanes;
constexpr int kAccumulators = Tuning::kAccumulators;
using idx = std::ptrdiff_t;

#if BIRNN_VECTOR_TYPES
typedef float V __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(kLanes * sizeof(float))));
inline V load(const float* p) { V v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
// One vbroadcastss: GCC builds neither `V{} + x` (an add) nor a lane loop (inserts) into one,
// but does a braced list of kLanes copies (as _mm256_set1_ps / _mm512_set1_ps are written).
template <std::size_t... I>
inline V splatLanes(float x, std::index_sequence<I...>) {
  return V{((void)I, x)...};
}
inline V splat(float x) { return splatLanes(x, std::make_index_sequence<kLanes>()); }
inline V fma(V a, V b, V c) { return a * b + c; }  // contracted to one FMA (-ffp-contract=fast)
inline V vmin(V a, V b) { return a < b ? a : b; }
inline V vmax(V a, V b) { return a > b ? a : b; }
inline V relu(V x) { return x < 0.0f ? splat(0.0f) : x; }  // NaN stays NaN, as torch.relu
inline V absv(V x) { return x < 0.0f ? -x : x; }
inline V withSignOf(V x, V r) { return x < 0.0f ? -r : r; }
inline V nanPassing(V x, V r) { return x != x ? x : r; }
inline V infAbove(V x, float limit, V r) { return x > limit ? splat(__builtin_inff()) : r; }
// 2^n for integral n in [-126, 127].
inline V pow2(V n) {
  VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  V r;
  std::memcpy(&r, &bits, sizeof r);
  return r;
}
#else
struct V { float v[kLanes]; };
#define BIRNN_MAP(expr) V out_; for (int i = 0; i < kLanes; ++i) out_.v[i] = (expr); return out_
inline V load(const float* p) { V v; std::memcpy(v.v, p, sizeof v); return v; }
inline void store(float* p, V v) { std::memcpy(p, v.v, sizeof v); }
inline V splat(float x) { BIRNN_MAP(x); }
inline V operator+(V a, V b) { BIRNN_MAP(a.v[i] + b.v[i]); }
inline V operator-(V a, V b) { BIRNN_MAP(a.v[i] - b.v[i]); }
inline V operator*(V a, V b) { BIRNN_MAP(a.v[i] * b.v[i]); }
inline V operator/(V a, V b) { BIRNN_MAP(a.v[i] / b.v[i]); }
inline V operator-(V a) { BIRNN_MAP(-a.v[i]); }
inline V fma(V a, V b, V c) { BIRNN_MAP(a.v[i] * b.v[i] + c.v[i]); }
inline V vmin(V a, V b) { BIRNN_MAP(a.v[i] < b.v[i] ? a.v[i] : b.v[i]); }
inline V vmax(V a, V b) { BIRNN_MAP(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
inline V relu(V x) { BIRNN_MAP(x.v[i] < 0 ? 0.0f : x.v[i]); }
inline V absv(V x) { BIRNN_MAP(x.v[i] < 0 ? -x.v[i] : x.v[i]); }
inline V withSignOf(V x, V r) { BIRNN_MAP(x.v[i] < 0 ? -r.v[i] : r.v[i]); }
inline V nanPassing(V x, V r) { BIRNN_MAP(x.v[i] != x.v[i] ? x.v[i] : r.v[i]); }
inline V infAbove(V x, float limit, V r) { BIRNN_MAP(x.v[i] > limit ? __builtin_inff() : r.v[i]); }
inline V pow2(V n) {
  V r;
  for (int i = 0; i < kLanes; ++i) {
    int32_t bits = (static_cast<int32_t>(n.v[i]) + 127) * (1 << 23);
    std::memcpy(&r.v[i], &bits, sizeof bits);
  }
  return r;
}
#undef BIRNN_MAP
#endif

// exp(x): x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact n ln2), then a degree-7
// Taylor polynomial for e^r (relative error < 1e-8 before rounding) times 2^n. Rounding to the
// nearest integer adds and subtracts 1.5 * 2^23. Below -87 the result stays at e^-87 (callers
// only add it to 1); above 88 it is +inf, so 1 / (1 + e^x) saturates to exactly 0.
inline V vexp(V xIn) {
  const V x = vmin(vmax(xIn, splat(-87.0f)), splat(88.0f));
  const V n = (x * splat(1.44269504088896341f) + splat(12582912.0f)) - splat(12582912.0f);
  V r = fma(n, splat(-0.693145751953125f), x);
  r = fma(n, splat(-1.428606765330187045e-06f), r);
  V p = splat(1.0f / 5040);
  p = fma(p, r, splat(1.0f / 720));
  p = fma(p, r, splat(1.0f / 120));
  p = fma(p, r, splat(1.0f / 24));
  p = fma(p, r, splat(1.0f / 6));
  p = fma(p, r, splat(0.5f));
  p = fma(p, r, splat(1.0f));
  p = fma(p, r, splat(1.0f));
  return infAbove(xIn, 88.0f, p * pow2(n));
}

// Max abs error about 1e-7 over the whole float range (kernel_test checks it against double);
// large |x| saturates to exactly 0, 1 or ±1; NaN in gives NaN out.
inline V vsigmoid(V x) { return nanPassing(x, splat(1.0f) / (splat(1.0f) + vexp(-x))); }
inline V vtanh(V x) {
  const V t = splat(1.0f) - splat(2.0f) / (vexp(absv(x) + absv(x)) + splat(1.0f));
  return nanPassing(x, withSignOf(x, t));
}

// ---- block sizes, each derived from the tuning -------------------------------------------------
// NV is the vectors across a panel: panelVectors(mode) or kProjectionVectors (kernel.h).

// Floats across a panel (W).
template <int NV>
constexpr int kPanelWidth = NV * kLanes;
// Rows of a full register tile (MR), each row NV accumulators.
template <int NV>
constexpr int kTileRows = kAccumulators / NV;
// Panels per tile for a tail of R < MR rows, so that the tail's tiles fill the accumulators too.
template <int NV, int R>
constexpr int kTailPanels = kAccumulators / (R * NV);
// Depth of a K block (KC): a KC x W slice of a B panel fills the L1 slice budget, so it stays in
// L1 while every row tile of a block uses it.
template <int NV>
constexpr int kSliceDepth = static_cast<int>(Tuning::kSliceBytes / (sizeof(float) * kPanelWidth<NV>));
// Rows of a block of the recurrence (MB): whole tiles whose gate sums (W floats a row) fill the
// step scratch budget; W_hh is read once per block.
template <int NV>
constexpr int kStepRows =
    (Tuning::kStepScratchBytes / (sizeof(float) * kPanelWidth<NV>) / kTileRows<NV> > 1
         ? static_cast<int>(Tuning::kStepScratchBytes / (sizeof(float) * kPanelWidth<NV>) / kTileRows<NV>)
         : 1) *
    kTileRows<NV>;
// Floats of A in a row block of the input projection; its rows are K floats, so the row count
// is set per call.
constexpr int kRowBlockFloats = static_cast<int>(Tuning::kRowBlockBytes / sizeof(float));

static_assert(Tuning::kSliceBytes + Tuning::kStepScratchBytes <= Tuning::kL1Bytes,
              "the B slice and the step's gate sums must both fit the L1 they are sized for");
// gemm() has a case for exactly these panel widths (NV 2, 3, 4), the ones forward.cc passes.
static_assert(panelVectors(Mode::RnnTanh) == 2 && panelVectors(Mode::RnnRelu) == 2 &&
                  panelVectors(Mode::Gru) == 3 && panelVectors(Mode::Lstm) == 4 && kProjectionVectors == 2,
              "a new panel width needs its case in gemm()");

// The register tile: ROWS rows by PANELS adjacent panels of NV vectors,
//   out[r][c] = seed[r][c] + sum over k of A[r, k] * B[k, c], one FMA per k, k in order,
// whatever ROWS and PANELS are, so a row's result never depends on how rows were grouped.
// seed is null for zeros; ldSeed 0 repeats one row (a bias). Panel pa of B starts
// pa * panelStride floats after B; in seed and out, panels are adjacent (W floats apart).
// Kept out of line so that nothing of its caller competes for the registers: ROWS broadcasts (or
// the B vectors, whichever are fewer), one operand and ROWS * PANELS * NV accumulators fill the
// register file without a spill.
template <int ROWS, int NV, int PANELS>
__attribute__((noinline)) void registerTile(int K, const float* A, idx lda, const float* B, idx panelStride,
                                            const float* seed, idx ldSeed, float* out, idx ldOut) {
  constexpr int W = kPanelWidth<NV>;
  constexpr int J = PANELS * NV;
  static_assert(ROWS * J <= kAccumulators, "a tile holds at most kAccumulators sums");
  static_assert(ROWS * J + (ROWS < J ? ROWS : J) + 1 <= Tuning::kRegisters,
                "a tile's sums, its broadcasts or B vectors and one operand must fit the register file");
  V acc[ROWS][J];
#pragma GCC unroll 32
  for (int r = 0; r < ROWS; ++r) {
#pragma GCC unroll 32
    for (int j = 0; j < J; ++j) {
      acc[r][j] = seed ? load(seed + r * ldSeed + (j / NV) * W + (j % NV) * kLanes) : splat(0.0f);
    }
  }
  for (int k = 0; k < K; ++k) {
    const float* Bk = B + static_cast<idx>(k) * W;
    if constexpr (ROWS <= J) {
      V a[ROWS];
#pragma GCC unroll 32
      for (int r = 0; r < ROWS; ++r) a[r] = splat(A[r * lda + k]);
#pragma GCC unroll 32
      for (int j = 0; j < J; ++j) {
        const V b = load(Bk + (j / NV) * panelStride + (j % NV) * kLanes);
#pragma GCC unroll 32
        for (int r = 0; r < ROWS; ++r) acc[r][j] = fma(a[r], b, acc[r][j]);
      }
    } else {
      V b[J];
#pragma GCC unroll 32
      for (int j = 0; j < J; ++j) b[j] = load(Bk + (j / NV) * panelStride + (j % NV) * kLanes);
#pragma GCC unroll 32
      for (int r = 0; r < ROWS; ++r) {
        const V a = splat(A[r * lda + k]);
#pragma GCC unroll 32
        for (int j = 0; j < J; ++j) acc[r][j] = fma(a, b[j], acc[r][j]);
      }
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < ROWS; ++r) {
#pragma GCC unroll 32
    for (int j = 0; j < J; ++j) store(out + r * ldOut + (j / NV) * W + (j % NV) * kLanes, acc[r][j]);
  }
}

template <int N>
struct Count {
  static constexpr int value = N;
};
// Calls fn(Count<n>{}) for a run-time n in [1, Max]: tails run the same code as full tiles.
template <int Max, typename Fn>
inline void withCount(int n, Fn&& fn) {
  if constexpr (Max > 1) {
    if (n < Max) return withCount<Max - 1>(n, fn);
  }
  fn(Count<Max>{});
}

// Cache blocking: a block of rows of A, all K of it (kRowBlockBytes: L2-resident), is multiplied
// panel by panel; within a panel, K block by K block, so each KC x W slice of B stays in L1
// while every row tile of the block uses it, and the block's C panel stays in cache across K
// blocks (C, the projection of every time step, is tens of MB: it must be written once, not per
// block).
template <int NV>
void gemmPanels(const GemmArgs& g) {
  constexpr int KC = kSliceDepth<NV>;
  constexpr int MR = kTileRows<NV>;
  constexpr int W = kPanelWidth<NV>;
  static_assert(MR >= 1 && KC >= 1, "the tuning leaves no room for a tile row or a K block");
  const int MC = (kRowBlockFloats / g.K / MR > 1 ? kRowBlockFloats / g.K / MR : 1) * MR;
  const idx panelStride = static_cast<idx>(g.K) * W;
  for (int i0 = 0; i0 < g.m; i0 += MC) {
    const int rows = g.m - i0 < MC ? g.m - i0 : MC;
    for (int p = 0; p < g.panels; ++p) {
      for (int k0 = 0; k0 < g.K; k0 += KC) {
        const int kc = g.K - k0 < KC ? g.K - k0 : KC;
        const bool fromC = k0 > 0;
        const float* B = g.B + p * panelStride + static_cast<idx>(k0) * W;
        for (int i = 0; i < rows; i += MR) {
          withCount<MR>(rows - i < MR ? rows - i : MR, [&](auto r) {
            float* C = g.C + (i0 + i) * g.ldc + p * W;
            const float* seed = fromC ? C : g.bias ? g.bias + p * W : nullptr;
            registerTile<decltype(r)::value, NV, 1>(kc, g.A + (i0 + i) * g.lda + k0, g.lda, B, panelStride, seed,
                                                    fromC ? g.ldc : 0, C, g.ldc);
          });
        }
      }
    }
  }
}

// Every width forward.cc passes has its case (static_assert above); no other width exists.
void gemm(const GemmArgs& g) {
  assert(g.width % kLanes == 0);
  switch (g.width / kLanes) {
    case 2: return gemmPanels<2>(g);
    case 3: return gemmPanels<3>(g);
    case 4: return gemmPanels<4>(g);
  }
  assert(!"gemm: width is not a panel width of kernel.h");
}

// The cell update of rows [i0, i0 + R) for the hidden units of panel p, from their recurrent
// gate sums g (row r's panel at g + r * ldg) and the input projections s.P.
template <Mode M, int R>
inline void cellUpdate(const StepArgs& s, int i0, int p, const float* g, idx ldg) {
  constexpr int UV = gateVectors(M);   // vectors per gate
  constexpr int U = UV * kLanes;       // hidden units per panel (PanelGeometry::units)
  constexpr int W = kPanelWidth<panelVectors(M)>;
  const int unit0 = p * U;
  for (int r = 0; r < R; ++r) {
    const float* P = s.P[i0 + r] + p * W;
    const float* gr = g + r * ldg;
    float* hNext = s.hNext + (i0 + r) * s.ldn + unit0;
    for (int u = 0; u < UV; ++u) {
      const int o = u * kLanes;
      if constexpr (M == Mode::RnnTanh) {
        store(hNext + o, vtanh(load(gr + o) + load(P + o)));
      } else if constexpr (M == Mode::RnnRelu) {
        store(hNext + o, relu(load(gr + o) + load(P + o)));
      } else if constexpr (M == Mode::Gru) {
        const V rg = vsigmoid(load(gr + o) + load(P + o));
        const V z = vsigmoid(load(gr + U + o) + load(P + U + o));
        const V n = vtanh(fma(rg, load(gr + 2 * U + o) + load(s.bhn + unit0 + o), load(P + 2 * U + o)));
        const V h = load(s.hPrev + (i0 + r) * s.ldh + unit0 + o);
        store(hNext + o, fma(z, h - n, n));  // (1 - z) n + z h
      } else {
        const V ig = vsigmoid(load(gr + o) + load(P + o));
        const V fg = vsigmoid(load(gr + U + o) + load(P + U + o));
        const V gg = vtanh(load(gr + 2 * U + o) + load(P + 2 * U + o));
        const V og = vsigmoid(load(gr + 3 * U + o) + load(P + 3 * U + o));
        float* c = s.c + (i0 + r) * s.ldc + unit0 + o;
        const V cn = fma(fg, load(c), ig * gg);
        store(c, cn);
        store(hNext + o, og * vtanh(cn));
      }
    }
  }
}

// One step, by blocks of MB rows: for each panel, the recurrent GEMM of the block runs K block
// by K block (each slice of W_hh reused by every row tile from L1) into a small scratch, and the
// cell update runs on it while it is still in L1. Rows past the last full tile use several
// panels per tile. hPrev and hNext are separate buffers because later panels still read the
// old state.
template <Mode M>
void stepPanels(const StepArgs& s) {
  constexpr int NV = panelVectors(M);
  constexpr int W = kPanelWidth<NV>;
  constexpr int MR = kTileRows<NV>;
  constexpr int MB = kStepRows<NV>;
  constexpr int KC = kSliceDepth<NV>;
  // A block's gate sums, or a tail's (at most kAccumulators vectors).
  constexpr int scratchFloats = MB * W > kAccumulators * kLanes ? MB * W : kAccumulators * kLanes;
  alignas(64) float scratch[scratchFloats];
  static_assert(sizeof scratch <= Tuning::kStepScratchBytes,
                "the gate sums of a block must fit the L1 budget the cell update reads them from");
  const idx panelStride = static_cast<idx>(s.K) * W;
  for (int b0 = 0; b0 < s.m; b0 += MB) {
    const int rows = s.m - b0 < MB ? s.m - b0 : MB;
    const int full = rows - rows % MR;
    const float* A = s.hPrev + b0 * s.ldh;
    for (int p = 0; full > 0 && p < s.geo.panels; ++p) {
      const float* B = s.Whh + p * panelStride;
      for (int k0 = 0; k0 < s.K; k0 += KC) {
        const int kc = s.K - k0 < KC ? s.K - k0 : KC;
        for (int i = 0; i < full; i += MR) {
          float* out = scratch + i * W;
          registerTile<MR, NV, 1>(kc, A + i * s.ldh + k0, s.ldh, B + static_cast<idx>(k0) * W, panelStride,
                                  k0 ? out : nullptr, W, out, W);
        }
      }
      for (int i = 0; i < full; i += MR) cellUpdate<M, MR>(s, b0 + i, p, scratch + i * W, W);
    }
    if (full == rows) continue;
    withCount<MR>(rows - full, [&](auto r) {
      constexpr int R = decltype(r)::value;
      constexpr int PA = kTailPanels<NV, R>;
      for (int p = 0; p < s.geo.panels; p += PA) {
        withCount<PA>(s.geo.panels - p < PA ? s.geo.panels - p : PA, [&](auto group) {
          constexpr int GP = decltype(group)::value;
          for (int k0 = 0; k0 < s.K; k0 += KC) {
            const int kc = s.K - k0 < KC ? s.K - k0 : KC;
            registerTile<R, NV, GP>(kc, A + full * s.ldh + k0, s.ldh,
                                    s.Whh + p * panelStride + static_cast<idx>(k0) * W, panelStride,
                                    k0 ? scratch : nullptr, GP * W, scratch, GP * W);
          }
          for (int q = 0; q < GP; ++q) cellUpdate<M, R>(s, b0 + full, p + q, scratch + q * W, GP * W);
        });
      }
    });
  }
}

void step(const StepArgs& s) {
  switch (s.mode) {
    case Mode::RnnTanh: return stepPanels<Mode::RnnTanh>(s);
    case Mode::RnnRelu: return stepPanels<Mode::RnnRelu>(s);
    case Mode::Gru: return stepPanels<Mode::Gru>(s);
    case Mode::Lstm: return stepPanels<Mode::Lstm>(s);
  }
}

template <V (*F)(V)>
void apply(const float* x, float* y, std::size_t n) {
  constexpr std::size_t lanes = kLanes;
  float in[lanes], out[lanes];
  for (std::size_t i = 0; i < n; i += lanes) {
    const std::size_t count = n - i < lanes ? n - i : lanes;
    for (std::size_t j = 0; j < lanes; ++j) in[j] = j < count ? x[i + j] : 0.0f;
    store(out, F(load(in)));
    for (std::size_t j = 0; j < count; ++j) y[i + j] = out[j];
  }
}

}  // namespace
}  // namespace birnn::detail::BIRNN_ISA

namespace birnn::detail {
const Kernels& BIRNN_KERNELS() {
  using namespace BIRNN_ISA;
  static constexpr Kernels kernels{Isa::BIRNN_ISA_ENUM, kLanes, gemm, step, apply<vtanh>, apply<vsigmoid>};
  return kernels;
}
}  // namespace birnn::detail
