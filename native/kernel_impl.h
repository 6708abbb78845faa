// The kernel body, compiled once per instruction set: kernel_<isa>.cc defines
//   BIRNN_ISA         the namespace and Isa enumerator name (generic, avx2, avx512),
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
typedef float V __attribute__((vector_size(L * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(L * sizeof(float))));
inline V load(const float* p) { V v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
inline V splat(float x) { return V{} + x; }
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

template <int N>
struct Rows {
  static constexpr int value = N;
};
// Calls fn(Rows<r>{}) for a run-time r in [1, R]: the row tail runs the same code as a full tile.
template <int R, typename Fn>
inline void withRows(int r, Fn&& fn) {
  if constexpr (R > 1) {
    if (r < R) return withRows<R - 1>(r, fn);
  }
  fn(Rows<R>{});
}

// acc[i][j] += sum over k of A[i, k] * B[k, j*L .. j*L+L), one FMA per k in order.
template <int R, int NV>
inline void tile(int K, const float* A, idx lda, const float* B, V (&acc)[R][NV]) {
  // Whichever operand is fewer stays in registers across the tile: R broadcasts of A, or NV
  // vectors of B; with R * NV accumulators this fits 16 (AVX2) or 32 (AVX-512) registers.
  for (int k = 0; k < K; ++k, B += NV * L) {
    if constexpr (R <= NV) {
      V a[R];
      for (int i = 0; i < R; ++i) a[i] = splat(A[i * lda + k]);
      for (int j = 0; j < NV; ++j) {
        const V b = load(B + j * L);
        for (int i = 0; i < R; ++i) acc[i][j] = fma(a[i], b, acc[i][j]);
      }
    } else {
      V b[NV];
      for (int j = 0; j < NV; ++j) b[j] = load(B + j * L);
      for (int i = 0; i < R; ++i) {
        const V a = splat(A[i * lda + k]);
        for (int j = 0; j < NV; ++j) acc[i][j] = fma(a, b[j], acc[i][j]);
      }
    }
  }
}

// Cache blocking: a block of MC rows of A (MC x KC floats, L2-resident) meets one KC x PW slice
// of a B panel at a time (L1-resident), so each B slice is reused by every tile of the block.
template <int NV>
void gemmPanels(const GemmArgs& g) {
  constexpr int MR = ACC / NV;
  constexpr int MC = MR * 16;
  constexpr int KC = 256;
  constexpr int W = NV * L;
  for (int i0 = 0; i0 < g.m; i0 += MC) {
    const int iEnd = g.m - i0 < MC ? g.m : i0 + MC;
    for (int k0 = 0; k0 < g.K; k0 += KC) {
      const int kc = g.K - k0 < KC ? g.K - k0 : KC;
      const bool fromC = k0 > 0 || g.accumulate;
      for (int p = 0; p < g.panels; ++p) {
        const float* B = g.B + (static_cast<idx>(p) * g.K + k0) * W;
        for (int i = i0; i < iEnd; i += MR) {
          withRows<MR>(iEnd - i, [&](auto rows) {
            constexpr int R = decltype(rows)::value;
            float* C = g.C + i * g.ldc + p * W;
            V acc[R][NV];
            for (int r = 0; r < R; ++r) {
              for (int j = 0; j < NV; ++j) {
                acc[r][j] = fromC ? load(C + r * g.ldc + j * L) : g.bias ? load(g.bias + p * W + j * L) : splat(0.0f);
              }
            }
            tile<R, NV>(kc, g.A + i * g.lda + k0, g.lda, B, acc);
            for (int r = 0; r < R; ++r) {
              for (int j = 0; j < NV; ++j) store(C + r * g.ldc + j * L, acc[r][j]);
            }
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

// One step: for each panel (every gate of `units` hidden units, L1-resident) and each tile of
// rows, the recurrent GEMM lands in registers and the cell update runs on them directly. The
// panel loop is outside so each panel of W_hh is read once per step; hPrev and hNext are
// separate buffers because later panels still read the old state.
template <Mode M, int NV>
void stepPanels(const StepArgs& s) {
  constexpr int G = M == Mode::Lstm ? 4 : M == Mode::Gru ? 3 : 1;
  constexpr int UV = NV / G;  // vectors per gate
  constexpr int U = UV * L;   // hidden units per panel
  constexpr int W = NV * L;
  constexpr int MR = ACC / NV;
  for (int p = 0; p < s.geo.panels; ++p) {
    const float* B = s.Whh + static_cast<idx>(p) * s.K * W;
    const int unit0 = p * U;
    for (int i0 = 0; i0 < s.m; i0 += MR) {
      withRows<MR>(s.m - i0, [&](auto rows) {
        constexpr int R = decltype(rows)::value;
        V acc[R][NV];
        for (int r = 0; r < R; ++r) {
          for (int j = 0; j < NV; ++j) acc[r][j] = splat(0.0f);
        }
        tile<R, NV>(s.K, s.hPrev + i0 * s.ldh, s.ldh, B, acc);
        for (int r = 0; r < R; ++r) {
          const float* P = s.P[i0 + r] + p * W;
          float* hNext = s.hNext + (i0 + r) * s.ldn + unit0;
          for (int u = 0; u < UV; ++u) {
            if constexpr (M == Mode::RnnTanh) {
              store(hNext + u * L, vtanh(acc[r][u] + load(P + u * L)));
            } else if constexpr (M == Mode::RnnRelu) {
              store(hNext + u * L, relu(acc[r][u] + load(P + u * L)));
            } else if constexpr (M == Mode::Gru) {
              const V rg = vsigmoid(acc[r][u] + load(P + u * L));
              const V z = vsigmoid(acc[r][UV + u] + load(P + U + u * L));
              const V n = vtanh(fma(rg, acc[r][2 * UV + u] + load(s.bhn + unit0 + u * L), load(P + 2 * U + u * L)));
              const V h = load(s.hPrev + (i0 + r) * s.ldh + unit0 + u * L);
              store(hNext + u * L, fma(z, h - n, n));  // (1 - z) n + z h
            } else {
              const V ig = vsigmoid(acc[r][u] + load(P + u * L));
              const V fg = vsigmoid(acc[r][UV + u] + load(P + U + u * L));
              const V gg = vtanh(acc[r][2 * UV + u] + load(P + 2 * U + u * L));
              const V og = vsigmoid(acc[r][3 * UV + u] + load(P + 3 * U + u * L));
              float* c = s.c + (i0 + r) * s.ldc + unit0 + u * L;
              const V cn = fma(fg, load(c), ig * gg);
              store(c, cn);
              store(hNext + u * L, og * vtanh(cn));
            }
          }
        }
      });
    }
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

