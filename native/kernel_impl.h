// The kernel body, compiled once per instruction set: kernel_<isa>.cc defines
//   BIRNN_ISA         the namespace of this copy (generic, avx2, avx512),
//   BIRNN_ISA_ENUM    its Isa enumerator, and BIRNN_KERNELS the accessor that returns its table,
//   BIRNN_LANES       floats per vector,
//   BIRNN_ACCUMULATORS  vector registers a GEMM tile may hold (about 3/4 of the register file),
//   BIRNN_VECTOR_TYPES  1: GCC/Clang vector types (the AVX files, compiled with -mavx2/-mavx512f);
//                       0: plain C++ arrays in fixed-size loops that the compiler vectorizes.
// and includes this file once. Everything here has internal linkage, and nothing here calls an
// inline function of a shared header: an out-of-line copy compiled with AVX-512 flags could
// otherwise be picked by the linker for callers on a CPU without it.
//
// SIMD contract: loads and stores are unaligned (memcpy); packed panels are PW = NV * LANES floats
// wide, so no column tail exists; row tails run the same code with fewer rows; every padded
// column holds zeros and every buffer row is padded to whole vectors by network.cc.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernel.h"

namespace birnn::detail::BIRNN_ISA {
namespace {

constexpr int L = BIRNN_LANES;
constexpr int ACC = BIRNN_ACCUMULATORS;
using idx = std::ptrdiff_t;

#if BIRNN_VECTOR_TYPES
#include <immintrin.h>  // the AVX files only; its functions are static, so nothing leaks out
typedef float V __attribute__((vector_size(L * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(L * sizeof(float))));
inline V load(const float* p) { V v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
// One vbroadcastss: GCC builds neither `V{} + x` (an add) nor a lane loop (inserts) into one.
#if BIRNN_LANES == 16
inline V splat(float x) { return _mm512_set1_ps(x); }
#else
inline V splat(float x) { return _mm256_set1_ps(x); }
#endif
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
struct V { float v[L]; };
#define BIRNN_MAP(expr) V out_; for (int i = 0; i < L; ++i) out_.v[i] = (expr); return out_
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
  for (int i = 0; i < L; ++i) {
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

// The register tile: R rows by PA adjacent panels of NV vectors,
//   out[r][c] = seed[r][c] + sum over k of A[r, k] * B[k, c], one FMA per k, k in order,
// whatever R and PA are, so a row's result never depends on how rows were grouped.
// seed is null for zeros; ldSeed 0 repeats one row (a bias). Panel pa of B starts
// pa * panelStride floats after B; in seed and out, panels are adjacent (W floats apart).
// Kept out of line so that nothing of its caller competes for the registers: R broadcasts (or
// the B vectors, whichever are fewer), one operand and R * PA * NV accumulators fill the 16
// (AVX2) or 32 (AVX-512) vector registers without a spill.
template <int R, int NV, int PA>
__attribute__((noinline)) void tile(int K, const float* A, idx lda, const float* B, idx panelStride,
                                    const float* seed, idx ldSeed, float* out, idx ldOut) {
  constexpr int W = NV * L;
  constexpr int J = PA * NV;
  V acc[R][J];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 32
    for (int j = 0; j < J; ++j) {
      acc[r][j] = seed ? load(seed + r * ldSeed + (j / NV) * W + (j % NV) * L) : splat(0.0f);
    }
  }
  for (int k = 0; k < K; ++k) {
    const float* Bk = B + static_cast<idx>(k) * W;
    if constexpr (R <= J) {
      V a[R];
#pragma GCC unroll 32
      for (int r = 0; r < R; ++r) a[r] = splat(A[r * lda + k]);
#pragma GCC unroll 32
      for (int j = 0; j < J; ++j) {
        const V b = load(Bk + (j / NV) * panelStride + (j % NV) * L);
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) acc[r][j] = fma(a[r], b, acc[r][j]);
      }
    } else {
      V b[J];
#pragma GCC unroll 32
      for (int j = 0; j < J; ++j) b[j] = load(Bk + (j / NV) * panelStride + (j % NV) * L);
#pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        const V a = splat(A[r * lda + k]);
#pragma GCC unroll 32
        for (int j = 0; j < J; ++j) acc[r][j] = fma(a, b[j], acc[r][j]);
      }
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 32
    for (int j = 0; j < J; ++j) store(out + r * ldOut + (j / NV) * W + (j % NV) * L, acc[r][j]);
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

// Rows per full tile, and panels per tile for a tail of R rows: R * PA * NV <= ACC.
template <int NV>
constexpr int fullRows = ACC / NV;
// Depth of a K block: a KC x PW slice of a B panel takes 16 KB, half of a small L1, so it stays
// there while every row tile of a block uses it.
template <int NV>
constexpr int depth = 4096 / (NV * L);
template <int NV, int R>
constexpr int tailPanels = ACC / (R * NV) > 0 ? ACC / (R * NV) : 1;

// Cache blocking: a block of rows of A, all K of it (256 KB: L2-resident), is multiplied panel
// by panel; within a panel, K block by K block, so each KC x PW slice of B stays in L1 while
// every row tile of the block uses it, and the block's C panel stays in cache across K blocks
// (C, the projection of every time step, is tens of MB: it must be written once, not per block).
template <int NV>
void gemmPanels(const GemmArgs& g) {
  constexpr int KC = depth<NV>;
  constexpr int MR = fullRows<NV>;
  constexpr int W = NV * L;
  const int MC = (65536 / g.K / MR > 1 ? 65536 / g.K / MR : 1) * MR;
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
            tile<decltype(r)::value, NV, 1>(kc, g.A + (i0 + i) * g.lda + k0, g.lda, B, panelStride, seed,
                                            fromC ? g.ldc : 0, C, g.ldc);
          });
        }
      }
    }
  }
}

void gemm(const GemmArgs& g) {
  switch (g.width / L) {
    case 1: return gemmPanels<1>(g);
    case 2: return gemmPanels<2>(g);
    case 3: return gemmPanels<3>(g);
    default: return gemmPanels<4>(g);
  }
}

// The cell update of rows [i0, i0 + R) for the hidden units of panel p, from their recurrent
// gate sums g (row r's panel at g + r * ldg) and the input projections s.P.
template <Mode M, int NV, int R>
inline void cellUpdate(const StepArgs& s, int i0, int p, const float* g, idx ldg) {
  constexpr int G = M == Mode::Lstm ? 4 : M == Mode::Gru ? 3 : 1;
  constexpr int UV = NV / G;  // vectors per gate
  constexpr int U = UV * L;   // hidden units per panel
  constexpr int W = NV * L;
  const int unit0 = p * U;
  for (int r = 0; r < R; ++r) {
    const float* P = s.P[i0 + r] + p * W;
    const float* gr = g + r * ldg;
    float* hNext = s.hNext + (i0 + r) * s.ldn + unit0;
    for (int u = 0; u < UV; ++u) {
      const int o = u * L;
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

// One step, by blocks of rows: for each panel, the recurrent GEMM of the block runs K block by
// K block (each slice of W_hh reused by every row tile from L1) into a small scratch, and the
// cell update runs on it while it is still in L1. Rows past the last full tile use several
// panels per tile. hPrev and hNext are separate buffers because later panels still read the
// old state.
template <Mode M, int NV>
void stepPanels(const StepArgs& s) {
  constexpr int W = NV * L;
  constexpr int MR = fullRows<NV>;
  constexpr int MB = MR * 32;  // rows per block: W_hh is read once per block
  constexpr int KC = depth<NV>;
  constexpr int scratchFloats = MB * W > ACC * L ? MB * W : ACC * L;
  alignas(64) float scratch[scratchFloats];
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
          tile<MR, NV, 1>(kc, A + i * s.ldh + k0, s.ldh, B + static_cast<idx>(k0) * W, panelStride,
                          k0 ? out : nullptr, W, out, W);
        }
      }
      for (int i = 0; i < full; i += MR) cellUpdate<M, NV, MR>(s, b0 + i, p, scratch + i * W, W);
    }
    if (full == rows) continue;
    withCount<MR>(rows - full, [&](auto r) {
      constexpr int R = decltype(r)::value;
      constexpr int PA = tailPanels<NV, R>;
      for (int p = 0; p < s.geo.panels; p += PA) {
        withCount<PA>(s.geo.panels - p < PA ? s.geo.panels - p : PA, [&](auto group) {
          constexpr int GP = decltype(group)::value;
          for (int k0 = 0; k0 < s.K; k0 += KC) {
            const int kc = s.K - k0 < KC ? s.K - k0 : KC;
            tile<R, NV, GP>(kc, A + full * s.ldh + k0, s.ldh, s.Whh + p * panelStride + static_cast<idx>(k0) * W,
                            panelStride, k0 ? scratch : nullptr, GP * W, scratch, GP * W);
          }
          for (int q = 0; q < GP; ++q) cellUpdate<M, NV, R>(s, b0 + full, p + q, scratch + q * W, GP * W);
        });
      }
    });
  }
}

void step(const StepArgs& s) {
  switch (s.mode) {
    case Mode::RnnTanh: return stepPanels<Mode::RnnTanh, 2>(s);
    case Mode::RnnRelu: return stepPanels<Mode::RnnRelu, 2>(s);
    case Mode::Gru: return stepPanels<Mode::Gru, 3>(s);
    case Mode::Lstm: return stepPanels<Mode::Lstm, 4>(s);
  }
}

template <V (*F)(V)>
void apply(const float* x, float* y, std::size_t n) {
  float in[L], out[L];
  for (std::size_t i = 0; i < n; i += L) {
    const std::size_t count = n - i < static_cast<std::size_t>(L) ? n - i : L;
    for (std::size_t j = 0; j < static_cast<std::size_t>(L); ++j) in[j] = j < count ? x[i + j] : 0.0f;
    store(out, F(load(in)));
    for (std::size_t j = 0; j < count; ++j) y[i + j] = out[j];
  }
}

}  // namespace
}  // namespace birnn::detail::BIRNN_ISA

namespace birnn::detail {
const Kernels& BIRNN_KERNELS() {
  using namespace BIRNN_ISA;
  static constexpr Kernels kernels{Isa::BIRNN_ISA_ENUM, L, gemm, step, apply<vtanh>, apply<vsigmoid>};
  return kernels;
}
}  // namespace birnn::detail
