// The kernel body, compiled once per instruction set: kernels/<isa>.cc includes its tuning
// header (tuning_<isa>.h: lanes, registers, cache budgets) and defines
//   BIRNN_ISA           the namespace of this copy (generic, avx2, avx512, neon),
//   BIRNN_ISA_ENUM      its Isa enumerator, and BIRNN_KERNELS the accessor that returns its table,
//   BIRNN_TUNING        its tuning struct,
//   BIRNN_VECTOR_TYPES  1: GCC/Clang vector types (the AVX files, compiled with -mavx2/-mavx512f,
//                       and the NEON file, whose ISA is the AArch64 baseline);
//                       0: plain C++ arrays in fixed-size loops that the compiler vectorizes,
//   BIRNN_X86_BITS      the AVX files only: 512 or 256, the width of the intrinsics below (not
//                       __AVX512F__, which a -march=native build on an AVX-512 CPU sets in
//                       avx2.cc too, whose vectors are 256-bit),
// then includes this file once. Every block size below is derived from the tuning, and
// static_asserts hold the couplings. Everything here has internal linkage, and nothing here
// calls an inline function of a shared header at run time (spec.h and kernel.h are only used
// in constant expressions): an out-of-line copy compiled with AVX-512 flags could otherwise be
// picked by the linker for callers on a CPU without it. (The x86 intrinsics used below are
// always inlined and never emitted out of line.)
//
// SIMD contract: loads and stores are unaligned (memcpy); packed panels are PW = NV * kLanes
// floats wide, so no column tail exists; row tails run the same code with fewer rows; every
// padded column holds zeros (network.cc packs them) and every work buffer row is padded to whole
// vectors (forward.cc sizes them). The exceptions: the layer output's rows (StepArgs::out and
// the next layer's A) hold the model's units only, so a row's last vector there is stored in
// part (storeFirst), and a tail's dot products (kernel.h's PanelGeometry::tail), which run along
// the rows of A, read their last vector in part (loadFirst), and whose cell update writes only
// the tail's units of the state (storeLanes: the padding lanes past them are never read).

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#if defined(BIRNN_X86_BITS)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#include "kernel.h"

namespace birnn::detail::BIRNN_ISA {
namespace {

using Tuning = BIRNN_TUNING;
constexpr int kLanes = Tuning::kLanes;
constexpr int kAccumulators = Tuning::kAccumulators;
using idx = std::ptrdiff_t;

#if BIRNN_VECTOR_TYPES
typedef float V __attribute__((vector_size(kLanes * sizeof(float))));
inline V load(const float* p) { V v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
// The first n < kLanes lanes of v to p, nothing past them.
inline void storeFirst(float* p, V v, int n) {
#if BIRNN_X86_BITS == 512
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), __m512(v));
#elif BIRNN_X86_BITS == 256
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), __m256(v));
#else
  float lanes[kLanes];
  store(lanes, v);
  std::memcpy(p, lanes, sizeof(float) * n);
#endif
}
// The first n <= kLanes floats at p and zeros after them; nothing past them is read.
inline V loadFirst(const float* p, int n) {
#if BIRNN_X86_BITS == 512
  return V(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p));
#elif BIRNN_X86_BITS == 256
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return V(_mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane)));
#else
  float lanes[kLanes] = {};
  std::memcpy(lanes, p, sizeof(float) * n);
  return load(lanes);
#endif
}
#if defined(BIRNN_X86_BITS)
// p moved back by `lanes` floats, as an address only: the masked loads and stores below touch
// none of the floats before p.
inline float* before(const float* p, int lanes) {
  return reinterpret_cast<float*>(reinterpret_cast<std::uintptr_t>(p) - sizeof(float) * lanes);
}
#if BIRNN_X86_BITS == 256
inline __m256i lanesMask(int first, int n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(first), lane),
                             _mm256_cmpgt_epi32(_mm256_set1_epi32(first + n), lane));
}
#endif
#endif
// v with lanes [first, first + n) replaced by the n floats at p; nothing else at p is read.
inline V loadLanes(V v, const float* p, int first, int n) {
#if BIRNN_X86_BITS == 512
  return V(_mm512_mask_loadu_ps(__m512(v), static_cast<__mmask16>(((1u << n) - 1) << first), before(p, first)));
#elif BIRNN_X86_BITS == 256
  const __m256i mask = lanesMask(first, n);
  return V(_mm256_blendv_ps(__m256(v), _mm256_maskload_ps(before(p, first), mask), _mm256_castsi256_ps(mask)));
#else
  float lanes[kLanes];
  store(lanes, v);
  std::memcpy(lanes + first, p, sizeof(float) * n);
  return load(lanes);
#endif
}
// Lanes [first, first + n) of v to the n floats at p; nothing else is written.
inline void storeLanes(float* p, V v, int first, int n) {
#if BIRNN_X86_BITS == 512
  _mm512_mask_storeu_ps(before(p, first), static_cast<__mmask16>(((1u << n) - 1) << first), __m512(v));
#elif BIRNN_X86_BITS == 256
  _mm256_maskstore_ps(before(p, first), lanesMask(first, n), __m256(v));
#else
  float lanes[kLanes];
  store(lanes, v);
  std::memcpy(p, lanes + first, sizeof(float) * n);
#endif
}
// The sum of v's lanes: halves added pairwise (the 4-lane ISAs' sumEach).
inline float sumLanes(V v) {
  float lanes[kLanes];
  store(lanes, v);
  for (int half = kLanes / 2; half > 0; half /= 2) {
    for (int i = 0; i < half; ++i) lanes[i] += lanes[i + half];
  }
  return lanes[0];
}
// One vbroadcastss: GCC builds neither `V{} + x` (an add) nor a lane loop (inserts) into one,
// but does a braced list of kLanes copies (as _mm256_set1_ps / _mm512_set1_ps are written).
template <std::size_t... I>
inline V splatLanes(float x, std::index_sequence<I...>) {
  return V{((void)I, x)...};
}
inline V splat(float x) { return splatLanes(x, std::make_index_sequence<kLanes>()); }
// fma() is the only fused multiply-add: every kernel is compiled with -ffp-contract=off and asks
// for the instruction by name. It was a * b + c left to -ffp-contract=fast, and which inlined
// copies fuse is the compiler's choice: built by GCC 13.3, the AVX2 and AVX-512 RNN rows' bits
// depended on the thread count (kernel_test), where the GCC 12 and Clang 19 builds passed.
#if defined(__wasm_relaxed_simd__)
// The engine's fused multiply-add where the host has one (V8: FMA3, NEON), else a multiply and an
// add: one choice per machine, the same for every tile and thread.
inline V fma(V a, V b, V c) { return V(__builtin_wasm_relaxed_madd_f32x4(a, b, c)); }
#elif BIRNN_X86_BITS == 512
inline V fma(V a, V b, V c) { return V(_mm512_fmadd_ps(__m512(a), __m512(b), __m512(c))); }
#elif BIRNN_X86_BITS == 256
inline V fma(V a, V b, V c) { return V(_mm256_fmadd_ps(__m256(a), __m256(b), __m256(c))); }
#elif defined(__aarch64__)
inline V fma(V a, V b, V c) { return V(vfmaq_f32(float32x4_t(c), float32x4_t(a), float32x4_t(b))); }
#else
inline V fma(V a, V b, V c) { return a * b + c; }  // a multiply and an add (wasm without relaxed SIMD)
#endif
// a < b ? a : b and a > b ? a : b, so that a NaN in b passes through: exactly x86's minps and
// maxps, one instruction each where GCC compiles the ternary into a compare and a blend (the
// activations clamp twice each).
#if BIRNN_X86_BITS == 512
// (The masked forms: the plain ones leave GCC 12 warning of an undefined pass-through operand.)
inline V lesser(V a, V b) { return V(_mm512_mask_min_ps(__m512(a), 0xffff, __m512(a), __m512(b))); }
inline V greater(V a, V b) { return V(_mm512_mask_max_ps(__m512(a), 0xffff, __m512(a), __m512(b))); }
#elif BIRNN_X86_BITS == 256
inline V lesser(V a, V b) { return V(_mm256_min_ps(__m256(a), __m256(b))); }
inline V greater(V a, V b) { return V(_mm256_max_ps(__m256(a), __m256(b))); }
#else
inline V lesser(V a, V b) { return a < b ? a : b; }
inline V greater(V a, V b) { return a > b ? a : b; }
#endif
inline V relu(V x) { return greater(splat(0.0f), x); }  // NaN stays NaN, as torch.relu
// x clamped to [lo, hi], NaN passed on (each comparison is false for NaN).
inline V clampPassingNaN(V x, float lo, float hi) { return lesser(splat(hi), greater(splat(lo), x)); }
#else
struct V { float v[kLanes]; };
#define BIRNN_MAP(expr) V out_; for (int i = 0; i < kLanes; ++i) out_.v[i] = (expr); return out_
inline V load(const float* p) { V v; std::memcpy(v.v, p, sizeof v); return v; }
inline void store(float* p, V v) { std::memcpy(p, v.v, sizeof v); }
inline void storeFirst(float* p, V v, int n) { std::memcpy(p, v.v, sizeof(float) * n); }
inline V loadFirst(const float* p, int n) {
  V v{};
  std::memcpy(v.v, p, sizeof(float) * n);
  return v;
}
inline V loadLanes(V v, const float* p, int first, int n) {
  std::memcpy(v.v + first, p, sizeof(float) * n);
  return v;
}
inline void storeLanes(float* p, V v, int first, int n) { std::memcpy(p, v.v + first, sizeof(float) * n); }
inline float sumLanes(V v) {  // halves added pairwise (the 4-lane ISAs' sumEach)
  for (int half = kLanes / 2; half > 0; half /= 2) {
    for (int i = 0; i < half; ++i) v.v[i] += v.v[i + half];
  }
  return v.v[0];
}
inline V splat(float x) { BIRNN_MAP(x); }
inline V operator+(V a, V b) { BIRNN_MAP(a.v[i] + b.v[i]); }
inline V operator-(V a, V b) { BIRNN_MAP(a.v[i] - b.v[i]); }
inline V operator*(V a, V b) { BIRNN_MAP(a.v[i] * b.v[i]); }
inline V operator/(V a, V b) { BIRNN_MAP(a.v[i] / b.v[i]); }
inline V fma(V a, V b, V c) { BIRNN_MAP(a.v[i] * b.v[i] + c.v[i]); }
inline V relu(V x) { BIRNN_MAP(x.v[i] < 0 ? 0.0f : x.v[i]); }
inline V clampPassingNaN(V x, float lo, float hi) { BIRNN_MAP(lo > x.v[i] ? lo : hi < x.v[i] ? hi : x.v[i]); }
#undef BIRNN_MAP
#endif

// tanh(x) = x P(x^2) / Q(x^2) for |x| <= 10, a rational minimax fit of relative error 2e-8
// (native/test/fit_tanh.py derives these coefficients). In float, with the roundings of Horner's
// scheme, the error is at most 4e-7 on every path (kernel_test checks them against double), and
// relative near 0. Half the work of 1 - 2 / (e^2x + 1): one division, no exponent arithmetic.
// The fit's target rises 1e-6 above tanh towards x = 10 (the script says how), so that the
// result, capped at ±1, saturates to exactly ±1 there and beyond, whatever the rounding: an
// LSTM's saturated forget gate must be exactly 1, as in PyTorch, or the cell state would decay.
constexpr double kTanhP[7] = {0.9999999800995477,     0.13038407809840127,   0.003053238675750391,
                              1.0631556334937478e-05, -1.8162589031064414e-08, 4.3226375648367865e-11,
                              -6.141905041953167e-14};
constexpr double kTanhQ[4] = {1.0, 0.4637172370862369, 0.02429257376243695, 0.00024727138087532024};
constexpr float kTanhLimit = 10.0f;
// sigmoid(x) = 1/2 + tanh(x/2) / 2 = 1/2 + x P'(x^2) / Q'(x^2), P'_i = P_i / (4 4^i) and
// Q'_i = Q_i / 4^i: the same fit, scaled at compile time, its odd part capped at ±1/2.
constexpr double pow4(int i) { return i == 0 ? 1.0 : 4.0 * pow4(i - 1); }
constexpr float sigmoidP(int i) { return static_cast<float>(kTanhP[i] / (4.0 * pow4(i))); }
constexpr float sigmoidQ(int i) { return static_cast<float>(kTanhQ[i] / pow4(i)); }

// x P(x^2) / Q(x^2) for x clamped to [-limit, limit], capped at ±cap.
inline V oddRational(V x, float limit, const float (&p)[7], const float (&q)[4], float cap) {
  const V xc = clampPassingNaN(x, -limit, limit);
  const V y = xc * xc;
  V num = splat(p[6]);
  for (int i = 5; i >= 0; --i) num = fma(num, y, splat(p[i]));
  V den = splat(q[3]);
  for (int i = 2; i >= 0; --i) den = fma(den, y, splat(q[i]));
  return clampPassingNaN(num * xc / den, -cap, cap);
}
inline V vtanh(V x) {
  static constexpr float p[7] = {kTanhP[0], kTanhP[1], kTanhP[2], kTanhP[3], kTanhP[4], kTanhP[5], kTanhP[6]};
  static constexpr float q[4] = {kTanhQ[0], kTanhQ[1], kTanhQ[2], kTanhQ[3]};
  return oddRational(x, kTanhLimit, p, q, 1.0f);
}
inline V vsigmoid(V x) {
  static constexpr float p[7] = {sigmoidP(0), sigmoidP(1), sigmoidP(2), sigmoidP(3),
                                 sigmoidP(4), sigmoidP(5), sigmoidP(6)};
  static constexpr float q[4] = {sigmoidQ(0), sigmoidQ(1), sigmoidQ(2), sigmoidQ(3)};
  return splat(0.5f) + oddRational(x, 2 * kTanhLimit, p, q, 0.5f);
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
//   out[r][c] = seed[r][c] + sum over k of A[r, k] * B[k, c], one fma() per k, k in order,
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

#if BIRNN_X86_BITS == 512
// Shuffles of x and y's 128-bit lanes (I 0x44: x.q0 x.q1 y.q0 y.q1; 0xee: x.q2 x.q3 y.q2 y.q3;
// 0x88: x.q0 x.q2 y.q0 y.q2; 0xdd: x.q1 x.q3 y.q1 y.q3), or within each 128-bit lane of x and y's
// floats (0x88: x.0 x.2 y.0 y.2; 0xdd: x.1 x.3 y.1 y.3). The masked forms: the plain ones leave
// GCC 12 warning, as lesser() does.
template <int I>
inline __m512 shuffle128(__m512 x, __m512 y) { return _mm512_mask_shuffle_f32x4(x, 0xffff, x, y, I); }
template <int I>
inline __m512 shuffle32(__m512 x, __m512 y) { return _mm512_mask_shuffle_ps(x, 0xffff, x, y, I); }
#endif

// Lane j of the result: the sum of a[j]'s lanes, by the same additions for every j (a butterfly:
// each level adds lanes that the one before left apart, for every vector at once).
inline V sumEach(const V (&a)[kLanes]) {
#if BIRNN_X86_BITS == 512
  __m512 b[8], c[4], d[2];
  // b[i]: 8 lanes of a[2i], 8 of a[2i+1]; c[i]: 4 lanes each of a[4i..4i+3], one 128-bit lane
  // each; d: per 128-bit lane q, two each of a[q], a[q+4] (d[0]) and a[q+8], a[q+12] (d[1]).
  for (int i = 0; i < 8; ++i) {
    b[i] = _mm512_add_ps(shuffle128<0x44>(__m512(a[2 * i]), __m512(a[2 * i + 1])),
                         shuffle128<0xee>(__m512(a[2 * i]), __m512(a[2 * i + 1])));
  }
  for (int i = 0; i < 4; ++i) {
    c[i] = _mm512_add_ps(shuffle128<0x88>(b[2 * i], b[2 * i + 1]), shuffle128<0xdd>(b[2 * i], b[2 * i + 1]));
  }
  for (int i = 0; i < 2; ++i) {
    d[i] = _mm512_add_ps(shuffle32<0x88>(c[2 * i], c[2 * i + 1]), shuffle32<0xdd>(c[2 * i], c[2 * i + 1]));
  }
  // Per 128-bit lane q: the sums of a[q], a[q+4], a[q+8], a[q+12]; then into order.
  const __m512 e = _mm512_add_ps(shuffle32<0x88>(d[0], d[1]), shuffle32<0xdd>(d[0], d[1]));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return V(_mm512_mask_permutexvar_ps(e, 0xffff, order, e));
#elif BIRNN_X86_BITS == 256
  __m256 h[4], g[2];
  for (int i = 0; i < 4; ++i) h[i] = _mm256_hadd_ps(__m256(a[2 * i]), __m256(a[2 * i + 1]));
  // g[i]: a[4i..4i+3]'s sums over their lower 128 bits, then over their upper.
  for (int i = 0; i < 2; ++i) g[i] = _mm256_hadd_ps(h[2 * i], h[2 * i + 1]);
  return V(_mm256_add_ps(_mm256_permute2f128_ps(g[0], g[1], 0x20), _mm256_permute2f128_ps(g[0], g[1], 0x31)));
#else
  float sums[kLanes];
  for (int j = 0; j < kLanes; ++j) sums[j] = sumLanes(a[j]);
  return load(sums);
#endif
}

// Lanes [first, first + n) of v in lanes [0, n), the others 0.
inline V lanesFrom(V v, int first, int n) {
#if BIRNN_X86_BITS == 512
  const __m512i from = _mm512_add_epi32(_mm512_set1_epi32(first), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                                                    10, 11, 12, 13, 14, 15));
  return V(_mm512_maskz_permutexvar_ps(static_cast<__mmask16>((1u << n) - 1), from, __m512(v)));
#elif BIRNN_X86_BITS == 256
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 moved = _mm256_permutevar8x32_ps(__m256(v), _mm256_add_epi32(_mm256_set1_epi32(first), lane));
  return V(_mm256_and_ps(moved, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane))));
#else
  float lanes[kLanes], out[kLanes] = {};
  store(lanes, v);
  for (int u = 0; u < n; ++u) out[u] = lanes[first + u];
  return load(out);
#endif
}

// One gate's tail sums for R rows of A (K floats each, lda apart), R * C <= kLanes, packed C
// lanes a row: lane r * C + u the dot product of row r with w's row u; the other lanes 0. Each
// row's arithmetic is the same whatever R is.
template <int R, int C>
inline V tailSums(const float* A, idx lda, int K, const float* w, idx ldw) {
  static_assert(R * C <= kLanes, "one sum a lane");
  V acc[kLanes];
  for (int j = 0; j < kLanes; ++j) acc[j] = splat(0.0f);
  int k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    V b[C];
    for (int u = 0; u < C; ++u) b[u] = load(w + u * ldw + k);
    for (int r = 0; r < R; ++r) {
      const V x = load(A + r * lda + k);
      for (int u = 0; u < C; ++u) acc[r * C + u] = fma(x, b[u], acc[r * C + u]);
    }
  }
  if (k < K) {
    for (int r = 0; r < R; ++r) {
      const V x = loadFirst(A + r * lda + k, K - k);  // a row may end here: the next float is another's
      for (int u = 0; u < C; ++u) acc[r * C + u] = fma(x, load(w + u * ldw + k), acc[r * C + u]);
    }
  }
  return sumEach(acc);
}

// The tail (TailArgs) of `rows` rows of A (K floats each, lda apart) into the last panel's
// columns of their rows at out (ldOut apart), seed's same columns added when seed is given (a
// bias, laid out as a row of out). As many rows at a time as their sums fill a vector's lanes.
__attribute__((noinline)) void tail(const float* A, idx lda, int rows, int K, const TailArgs& t, const float* seed,
                                    float* out, idx ldOut) {
  static_assert(Tuning::kTailUnits <= 4, "a tail of more units needs more cases here");
  withCount<4>(t.units, [&](auto c) {
    constexpr int C = decltype(c)::value;
    constexpr int RB = kLanes / C > 0 ? kLanes / C : 1;
    for (int i = 0; i < rows; i += RB) {
      withCount<RB>(rows - i < RB ? rows - i : RB, [&](auto r) {
        constexpr int R = decltype(r)::value;
        for (int g = 0; g < t.gates; ++g) {
          const int at = g * kLanes;  // a tail panel is one vector a gate
          const V sums = tailSums<R, C>(A + i * lda, lda, K, t.w + g * C * t.ldw, t.ldw);
          for (int q = 0; q < R; ++q) {
            const V v = lanesFrom(sums, q * C, C);
            store(out + (i + q) * ldOut + at, seed ? load(seed + at) + v : v);
          }
        }
      });
    }
  });
}

// Rows [i0, i0 + rows) of one panel of NV vectors, whose B starts `b0` floats into g.B and whose
// columns start at column `c0` of C (and of the bias).
template <int NV>
void gemmPanel(const GemmArgs& g, int i0, int rows, idx b0, int c0) {
  constexpr int KC = kSliceDepth<NV>;
  constexpr int MR = kTileRows<NV>;
  constexpr int W = kPanelWidth<NV>;
  static_assert(MR >= 1 && KC >= 1, "the tuning leaves no room for a tile row or a K block");
  for (int k0 = 0; k0 < g.K; k0 += KC) {
    const int kc = g.K - k0 < KC ? g.K - k0 : KC;
    const bool fromC = k0 > 0;
    const float* B = g.B + b0 + static_cast<idx>(k0) * W;
    for (int i = 0; i < rows; i += MR) {
      withCount<MR>(rows - i < MR ? rows - i : MR, [&](auto r) {
        float* C = g.C + (i0 + i) * g.ldc + c0;
        const float* seed = fromC ? C : g.bias ? g.bias + c0 : nullptr;
        registerTile<decltype(r)::value, NV, 1>(kc, g.A + (i0 + i) * g.lda + k0, g.lda, B, 0, seed,
                                                fromC ? g.ldc : 0, C, g.ldc);
      });
    }
  }
}

// Cache blocking: a block of rows of A, all K of it (kRowBlockBytes: L2-resident), is multiplied
// panel by panel; within a panel, K block by K block, so each KC x W slice of B stays in L1
// while every row tile of the block uses it, and the block's C panel stays in cache across K
// blocks (C, the projection of every time step, is tens of MB: it must be written once, not per
// block). A narrow last panel (GemmArgs::lastWidth) runs as one-vector tiles; a tail after the
// block's panels.
template <int NV>
void gemmPanels(const GemmArgs& g) {
  constexpr int MR = kTileRows<NV>;
  constexpr int W = kPanelWidth<NV>;
  const int MC = (kRowBlockFloats / g.K / MR > 1 ? kRowBlockFloats / g.K / MR : 1) * MR;
  const idx panelStride = static_cast<idx>(g.K) * W;
  assert(g.lastWidth == W || g.lastWidth == kLanes || (g.lastWidth == 0 && g.tail.units > 0));
  const int last = g.panels - 1;
  for (int i0 = 0; i0 < g.m; i0 += MC) {
    const int rows = g.m - i0 < MC ? g.m - i0 : MC;
    for (int p = 0; p < g.panels; ++p) {
      if (p < last || g.lastWidth == W) {
        gemmPanel<NV>(g, i0, rows, p * panelStride, p * W);
      } else if (g.lastWidth == kLanes) {
        gemmPanel<1>(g, i0, rows, p * panelStride, p * W);
      }
    }
    if (g.tail.units > 0) {
      tail(g.A + i0 * g.lda, g.lda, rows, g.K, g.tail, g.bias ? g.bias + last * W : nullptr,
           g.C + i0 * g.ldc + last * W, g.ldc);
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

// Row `row`'s new hidden state v, units [unit, unit + kLanes), into the state at h and, when the
// step has output rows, into the layer output (the model's units only: its row has no padding,
// and the next ones are other units or rows).
inline void storeState(const StepArgs& s, int row, int unit, float* h, V v) {
  store(h, v);
  if (s.out == nullptr) return;
  const int n = s.outUnits - unit;
  if (n >= kLanes) {
    store(s.out[row] + unit, v);
  } else if (n > 0) {
    storeFirst(s.out[row] + unit, v, n);
  }
}

// The cell update of rows [i0, i0 + R) for the hidden units of panel p, NV vectors wide (a full
// panel, or a narrow last one), from their recurrent gate sums g (row r's panel at g + r * ldg)
// and the input projections s.P.
template <Mode M, int NV, int R>
inline void cellUpdate(const StepArgs& s, int i0, int p, const float* g, idx ldg) {
  constexpr int UV = NV / spec::gates(M);  // vectors per gate
  constexpr int U = UV * kLanes;           // hidden units of this panel
  // Where the panel starts: as many full panels before it.
  const int unit0 = p * s.geo.units;
  // Gated cells run in two passes: every row's gates first, then every row's cells: two short
  // dependency chains a row instead of one long one, so that more rows' divisions are in flight
  // at once (perf: the clamps after vdivps held 15% of the LSTM's cell update). In between, a
  // row's i*g, f and o (LSTM), or its z and the argument of n's tanh (GRU).
  constexpr bool gated = M == Mode::Lstm || M == Mode::Gru;
  alignas(64) float gates[gated ? R : 1][UV][3][kLanes];
  for (int r = 0; r < R; ++r) {
    const float* P = s.P[i0 + r] + p * s.geo.width();
    const float* gr = g + r * ldg;
    float* hNext = s.hNext + (i0 + r) * s.ldn + unit0;
    for (int u = 0; u < UV; ++u) {
      const int o = u * kLanes;
      if constexpr (M == Mode::RnnTanh) {
        storeState(s, i0 + r, unit0 + o, hNext + o, vtanh(load(gr + o) + load(P + o)));
      } else if constexpr (M == Mode::RnnRelu) {
        storeState(s, i0 + r, unit0 + o, hNext + o, relu(load(gr + o) + load(P + o)));
      } else if constexpr (M == Mode::Gru) {
        const V rg = vsigmoid(load(gr + o) + load(P + o));
        store(gates[r][u][0], vsigmoid(load(gr + U + o) + load(P + U + o)));
        store(gates[r][u][1], fma(rg, load(gr + 2 * U + o) + load(s.bhn + unit0 + o), load(P + 2 * U + o)));
      } else {
        const V ig = vsigmoid(load(gr + o) + load(P + o));
        const V fg = vsigmoid(load(gr + U + o) + load(P + U + o));
        const V gg = vtanh(load(gr + 2 * U + o) + load(P + 2 * U + o));
        const V og = vsigmoid(load(gr + 3 * U + o) + load(P + 3 * U + o));
        store(gates[r][u][0], ig * gg);
        store(gates[r][u][1], fg);
        store(gates[r][u][2], og);
      }
    }
  }
  if constexpr (gated) {
    for (int r = 0; r < R; ++r) {
      float* hNext = s.hNext + (i0 + r) * s.ldn + unit0;
      for (int u = 0; u < UV; ++u) {
        const int o = u * kLanes;
        if constexpr (M == Mode::Gru) {
          const V z = load(gates[r][u][0]);
          const V n = vtanh(load(gates[r][u][1]));
          const V h = load(s.hPrev + (i0 + r) * s.ldh + unit0 + o);
          storeState(s, i0 + r, unit0 + o, hNext + o, fma(z, h - n, n));  // (1 - z) n + z h
        } else {
          float* c = s.c + (i0 + r) * s.ldc + unit0 + o;
          const V cn = fma(load(gates[r][u][1]), load(c), load(gates[r][u][0]));
          store(c, cn);
          storeState(s, i0 + r, unit0 + o, hNext + o, load(gates[r][u][2]) * vtanh(cn));
        }
      }
    }
  }
}

// The cell update reads each row's input projection once per step, from the projections of
// every step (megabytes, in L3 or memory): without this, its first load of each row stalls
// (perf: a fifth of the LSTM cell update at H = 64). Panel p (W floats wide) of rows
// [i0, i0 + rows) is fetched into L2 while that panel's recurrent GEMM runs.
template <int W>
inline void prefetchProjections(const StepArgs& s, int i0, int rows, int p) {
  constexpr int kLineFloats = 64 / sizeof(float);
  for (int r = 0; r < rows; ++r) {
    const float* P = s.P[i0 + r] + p * s.geo.width();
    for (int o = 0; o < W; o += kLineFloats) __builtin_prefetch(P + o, 0, 2);
    __builtin_prefetch(P + W - 1, 0, 2);  // the last line, when the slice straddles one more
  }
}

// A block whose rows are not whole tiles is cut into tiles as even as the tile height allows (8
// rows of a 6-row tile: 4 + 4) when each still holds this many sums: every tile then reads W_hh's
// slices from L1, where a short tail would stream W_hh from L2 once more (16-core Xeon, one thread,
// the W-b64 LSTM recurrence: chunks of 8 rows as 6 + 2 ran at 80 GFLOP/s, chunks of 4 at 96).
// Never with 12 accumulators or fewer (AVX2, wasm): there, tiles of 8-9 sums ran 5-30% slower
// than a full tile and a tail.
constexpr int kEvenTileSums = 16;

// Panels [pBegin, pEnd) of one step, each NV vectors wide, by blocks of MB rows: for each panel,
// the recurrent GEMM of the block runs K block by K block (each slice of W_hh reused by every row
// tile from L1) into a small scratch, and the cell update runs on it while it is still in L1.
// Rows past the last full tile are spread over even tiles (kEvenTileSums), or run as a short last
// tile when W_hh is beyond L2, or else as a tail of several panels per tile. hPrev and hNext are
// separate buffers because later panels still read the old state.
template <Mode M, int NV>
void stepRange(const StepArgs& s, int pBegin, int pEnd) {
  constexpr int W = kPanelWidth<NV>;
  constexpr int MR = kTileRows<NV>;
  constexpr int MB = kStepRows<NV>;
  constexpr int KC = kSliceDepth<NV>;
  // A block's gate sums, or a tail's (at most kAccumulators vectors).
  constexpr int scratchFloats = MB * W > kAccumulators * kLanes ? MB * W : kAccumulators * kLanes;
  alignas(64) float scratch[scratchFloats];
  static_assert(sizeof scratch <= Tuning::kStepScratchBytes,
                "the gate sums of a block must fit the L1 budget the cell update reads them from");
  const idx panelStride = static_cast<idx>(s.K) * s.geo.width();  // where panel p of W_hh starts
  // W_hh of these panels beyond L2: a pass of their own for the tail rows would stream it from L3
  // or memory a second time (LSTM H = 1024, 16 rows: 5 tiles and a tail, 2x the traffic).
  const bool large = static_cast<std::size_t>(s.K) * W * (pEnd - pBegin) * sizeof(float) > Tuning::kL2Bytes;
  for (int b0 = 0; b0 < s.m; b0 += MB) {
    const int rows = s.m - b0 < MB ? s.m - b0 : MB;
    const int tiles = (rows + MR - 1) / MR;
    const bool ragged = rows % MR != 0;
    const bool even = kAccumulators >= kEvenTileSums && ragged && rows / tiles * NV >= kEvenTileSums;
    // Rows past the last full tile run in the panels' pass (as even tiles, or when W_hh is large
    // as a short last tile), or else in a pass of their own, several panels per tile (the only
    // pass when there is no full tile).
    const int full = even || (ragged && large && rows > MR) ? rows : rows - rows % MR;
    // Tile t's first row and height: full tiles (the last one short, when in the pass), or even
    // ones (the first rows % tiles one taller).
    auto tileRow = [&](int t) {
      return even ? t * (rows / tiles) + (t < rows % tiles ? t : rows % tiles) : t * MR < rows ? t * MR : rows;
    };
    const int count = full == rows ? tiles : full / MR;
    const float* A = s.hPrev + b0 * s.ldh;
    for (int p = pBegin; full > 0 && p < pEnd; ++p) {
      prefetchProjections<W>(s, b0, rows, p);
      const float* B = s.Whh + p * panelStride;
      for (int k0 = 0; k0 < s.K; k0 += KC) {
        const int kc = s.K - k0 < KC ? s.K - k0 : KC;
        for (int t = 0; t < count; ++t) {
          const int i = tileRow(t);
          withCount<MR>(tileRow(t + 1) - i, [&](auto r) {
            float* out = scratch + i * W;
            registerTile<decltype(r)::value, NV, 1>(kc, A + i * s.ldh + k0, s.ldh, B + static_cast<idx>(k0) * W,
                                                    panelStride, k0 ? out : nullptr, W, out, W);
          });
        }
      }
      for (int t = 0; t < count; ++t) {
        const int i = tileRow(t);
        withCount<MR>(tileRow(t + 1) - i,
                      [&](auto r) { cellUpdate<M, NV, decltype(r)::value>(s, b0 + i, p, scratch + i * W, W); });
      }
    }
    if (full == rows) continue;
    withCount<MR>(rows - full, [&](auto r) {
      constexpr int R = decltype(r)::value;
      constexpr int PA = kTailPanels<NV, R>;
      for (int p = pBegin; p < pEnd; p += PA) {
        withCount<PA>(pEnd - p < PA ? pEnd - p : PA, [&](auto group) {
          constexpr int GP = decltype(group)::value;
          for (int q = 0; q < GP; ++q) prefetchProjections<W>(s, b0 + full, R, p + q);
          for (int k0 = 0; k0 < s.K; k0 += KC) {
            const int kc = s.K - k0 < KC ? s.K - k0 : KC;
            registerTile<R, NV, GP>(kc, A + full * s.ldh + k0, s.ldh,
                                    s.Whh + p * panelStride + static_cast<idx>(k0) * W, panelStride,
                                    k0 ? scratch : nullptr, GP * W, scratch, GP * W);
          }
          for (int q = 0; q < GP; ++q) cellUpdate<M, NV, R>(s, b0 + full, p + q, scratch + q * W, GP * W);
        });
      }
    });
  }
}

// The last panel p of a step when it is a tail (PanelGeometry::tail) of C units: its sums come
// packed C lanes a row, R rows a vector (tailSums), and the cell update runs on them as they are,
// so that each vector of activations serves R rows, not one row's C units. Each lane gets the
// operations cellUpdate gives it, in the same order: the same bits. The state's padding lanes
// past the tail's units are neither written nor read.
template <Mode M>
void stepTail(const StepArgs& s, int p) {
  constexpr int G = spec::gates(M);
  const int unit0 = p * s.geo.units;
  const int outUnits = s.out ? (s.outUnits - unit0 < s.tail.units ? s.outUnits - unit0 : s.tail.units) : 0;
  static_assert(Tuning::kTailUnits <= 4, "a tail of more units needs more cases here");
  withCount<4>(s.tail.units, [&](auto c) {
    constexpr int C = decltype(c)::value;
    constexpr int RB = kLanes / C > 0 ? kLanes / C : 1;
    // b_hn of the tail's units, in every row's lanes.
    V bhn = splat(0.0f);
    for (int q = 0; M == Mode::Gru && q < RB; ++q) bhn = loadLanes(bhn, s.bhn + unit0, q * C, C);
    for (int i = 0; i < s.m; i += RB) {
      withCount<RB>(s.m - i < RB ? s.m - i : RB, [&](auto r) {
        constexpr int R = decltype(r)::value;
        // Each row's C floats at row(i + q) in its lanes: of the projection, the state, the cell.
        auto gather = [&](auto row) {
          V v = splat(0.0f);
          for (int q = 0; q < R; ++q) v = loadLanes(v, row(i + q), q * C, C);
          return v;
        };
        auto scatter = [&](auto row, V v, int n) {
          for (int q = 0; q < R; ++q) storeLanes(row(i + q), v, q * C, n);
        };
        auto projection = [&](int g) {
          return [&s, p, g](int row) { return s.P[row] + p * s.geo.width() + g * kLanes; };
        };
        for (int q = 0; q < R; ++q) {
          for (int g = 0; g < G; ++g) __builtin_prefetch(projection(g)(i + q), 0, 3);
        }
        V sum[G];
        for (int g = 0; g < G; ++g) {
          sum[g] = tailSums<R, C>(s.hPrev + i * s.ldh, s.ldh, s.K, s.tail.w + g * C * s.tail.ldw, s.tail.ldw);
        }
        V h;
        if constexpr (M == Mode::RnnTanh) {
          h = vtanh(sum[0] + gather(projection(0)));
        } else if constexpr (M == Mode::RnnRelu) {
          h = relu(sum[0] + gather(projection(0)));
        } else if constexpr (M == Mode::Gru) {
          const V rg = vsigmoid(sum[0] + gather(projection(0)));
          const V z = vsigmoid(sum[1] + gather(projection(1)));
          const V n = vtanh(fma(rg, sum[2] + bhn, gather(projection(2))));
          const V hp = gather([&](int row) { return s.hPrev + row * s.ldh + unit0; });
          h = fma(z, hp - n, n);  // (1 - z) n + z h
        } else {
          const V ig = vsigmoid(sum[0] + gather(projection(0)));
          const V fg = vsigmoid(sum[1] + gather(projection(1)));
          const V gg = vtanh(sum[2] + gather(projection(2)));
          const V og = vsigmoid(sum[3] + gather(projection(3)));
          auto cell = [&](int row) { return s.c + row * s.ldc + unit0; };
          const V cn = fma(fg, gather(cell), ig * gg);
          scatter(cell, cn, C);
          h = og * vtanh(cn);
        }
        scatter([&](int row) { return s.hNext + row * s.ldn + unit0; }, h, C);
        if (outUnits > 0) scatter([&](int row) { return s.out[row] + unit0; }, h, outUnits);
      });
    }
  });
}

// One step: the full panels, then a narrow last panel (PanelGeometry) as one-vector tiles, or a
// last panel with a tail.
template <Mode M>
void stepPanels(const StepArgs& s) {
  const bool last = s.panelEnd == s.geo.panels;
  const bool narrow = s.geo.lastUnits != s.geo.units && last;
  const bool tail = s.tail.units > 0 && last;
  const int end = narrow || tail ? s.panelEnd - 1 : s.panelEnd;
  if constexpr (gateVectors(M) == 2) {
    if (s.panelBegin < end && s.geo.units == 3 * kLanes) {
      stepRange<M, 3>(s, s.panelBegin, end);
    } else if (s.panelBegin < end) {
      stepRange<M, 2>(s, s.panelBegin, end);
    }
    if (tail) {
      stepTail<M>(s, end);
    } else if (narrow) {
      stepRange<M, 1>(s, end, end + 1);
    }
  } else {
    if (s.panelBegin < end) stepRange<M, panelVectors(M)>(s, s.panelBegin, end);
    if (tail) stepTail<M>(s, end);
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
  static constexpr Kernels kernels{Isa::BIRNN_ISA_ENUM, kLanes, Tuning::kTailUnits, gemm, step, apply<vtanh>,
                                   apply<vsigmoid>};
  return kernels;
}
}  // namespace birnn::detail
