// Plain C++ tests of one kernel, or of every kernel this CPU has:
//  - vectorized tanh and sigmoid against double precision over the whole float range;
//  - the Network against a double-precision scalar reference, for every mode and option;
//  - the same bits for every thread count;
//  - the same bits for tasks posted to the pool, as forward() runs them;
//  - the thread plan's choices, the step barrier and the pool's posted tasks (`plan`), and
//    allocateFloats' reuse of freed memory (`memory`): scheduling_test.cc.
// Usage: birnn_kernel_test [generic|avx2|avx512|neon|wide16|plan|memory]; wide16 is the AVX-512 geometry in
// portable code. Prints `ok   <name>` or `FAIL <name>: detail` per test, then `N passed, N
// failed`; exits 77 (a skip for ctest) when the CPU lacks the requested ISA. No argument: every
// ISA the CPU has, then wide16.
// Build: cmake -S . -B build-kernel -DBIRNN_KERNEL_TESTS=ON && cmake --build build-kernel
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "birnn.h"
#include "kernels/kernel.h"
#include "test_support.h"
#include "thread_plan.h"

using namespace birnn;
using namespace birnn::checks;

namespace birnn::detail {
const Kernels& kernelsWide16();  // kernel_wide.cc
}

namespace {

constexpr int kSkipped = 77;  // ctest's SKIP_RETURN_CODE (CMakeLists.txt)

// A kernel under test and the name its tests carry.
struct Target {
  std::string name;
  const detail::Kernels* kernels;
};

// Every 97th float bit pattern (both signs, all exponents, NaN and infinities included).
void activations(const Target& target) {
  const detail::Kernels& k = *target.kernels;
  std::vector<float> x, yt, ys;
  for (uint64_t bits = 0; bits <= 0xffffffffull; bits += 97) {
    float f;
    const uint32_t b = static_cast<uint32_t>(bits);
    std::memcpy(&f, &b, 4);
    x.push_back(f);
  }
  yt.resize(x.size());
  ys.resize(x.size());
  k.tanh(x.data(), yt.data(), x.size());
  k.sigmoid(x.data(), ys.data(), x.size());
  double maxTanh = 0, maxSigmoid = 0, maxTanhRelative = 0;
  std::size_t nanMisses = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      if (!std::isnan(yt[i]) || !std::isnan(ys[i])) ++nanMisses;
      continue;
    }
    const double t = std::tanh(static_cast<double>(x[i]));
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
    maxTanh = std::max(maxTanh, std::fabs(yt[i] - t));
    if (t != 0) maxTanhRelative = std::max(maxTanhRelative, std::fabs(yt[i] - t) / std::fabs(t));
    maxSigmoid = std::max(maxSigmoid, std::fabs(ys[i] - s));
  }
  const std::string prefix = target.name + " ";
  report(nanMisses == 0, prefix + "NaN in gives NaN out", format("%.0f NaN inputs gave a number", static_cast<double>(nanMisses)));
  report(maxTanh <= 4e-7, prefix + "tanh max abs error <= 4e-7", format("%.3g", maxTanh));
  report(maxTanhRelative <= 4e-7, prefix + "tanh max relative error <= 4e-7 (also near 0)", format("%.3g", maxTanhRelative));
  report(maxSigmoid <= 3e-7, prefix + "sigmoid max abs error <= 3e-7", format("%.3g", maxSigmoid));
  // Where tanh rounds to ±1 in float (|x| >= 9.1), so must ours: a saturated LSTM forget gate
  // (sigmoid = tanh(x/2)/2 + 1/2) of exactly 1 keeps the cell state, as in PyTorch.
  const float big[6] = {9.5f, 10.0f, 12.0f, 1e30f, INFINITY, 3.4e38f};
  bool tanhSaturates = true, sigmoidSaturates = true;
  for (float b : big) {
    const float in[4] = {b, -b, 2 * b, -2 * b};
    float ot[4], os[4];
    k.tanh(in, ot, 4);
    k.sigmoid(in + 2, os, 2);
    tanhSaturates = tanhSaturates && ot[0] == 1 && ot[1] == -1;
    sigmoidSaturates = sigmoidSaturates && os[0] == 1 && os[1] == 0;
  }
  report(tanhSaturates, prefix + "tanh is exactly +-1 from |x| = 9.5", "");
  report(sigmoidSaturates, prefix + "sigmoid is exactly 0 and 1 from |x| = 19", "");
}

// Straightforward double-precision reference of one forward pass (no lengths, time-major).
struct Reference {
  Config cfg;
  std::vector<std::vector<float>> tensors;  // per (layer, dir): wih, whh, bih, bhh, whr
  std::vector<float> run(const std::vector<float>& x, int T, int N) const {
    const int D = cfg.bidirectional ? 2 : 1, H = cfg.hiddenSize, Ho = cfg.projSize ? cfg.projSize : H;
    const int G = spec::gates(cfg.mode);
    std::vector<double> in(x.begin(), x.end());
    int width = cfg.inputSize;
    for (int l = 0; l < cfg.numLayers; ++l) {
      std::vector<double> out(static_cast<std::size_t>(T) * N * D * Ho);
      for (int d = 0; d < D; ++d) {
        const auto* t = &tensors[(l * D + d) * 5];
        for (int n = 0; n < N; ++n) {
          std::vector<double> h(Ho, 0), c(H, 0), gi(G * H), gh(G * H), co(H);
          for (int s = 0; s < T; ++s) {
            const int tt = d ? T - 1 - s : s;
            for (int r = 0; r < G * H; ++r) {
              double a = cfg.bias ? t[2][r] : 0, b = cfg.bias ? t[3][r] : 0;
              for (int k = 0; k < width; ++k) a += t[0][r * width + k] * in[(tt * N + n) * width + k];
              for (int k = 0; k < Ho; ++k) b += t[1][r * Ho + k] * h[k];
              gi[r] = a;
              gh[r] = b;
            }
            auto sg = [](double v) { return 1 / (1 + std::exp(-v)); };
            for (int j = 0; j < H; ++j) {
              switch (cfg.mode) {
                case Mode::RnnTanh: h[j] = std::tanh(gi[j] + gh[j]); break;
                case Mode::RnnRelu: h[j] = std::max(0.0, gi[j] + gh[j]); break;
                case Mode::Gru: {
                  const double rr = sg(gi[j] + gh[j]), z = sg(gi[H + j] + gh[H + j]);
                  const double nn = std::tanh(gi[2 * H + j] + rr * gh[2 * H + j]);
                  h[j] = (1 - z) * nn + z * h[j];
                  break;
                }
                case Mode::Lstm: {
                  c[j] = sg(gi[H + j] + gh[H + j]) * c[j] + sg(gi[j] + gh[j]) * std::tanh(gi[2 * H + j] + gh[2 * H + j]);
                  co[j] = sg(gi[3 * H + j] + gh[3 * H + j]) * std::tanh(c[j]);
                  break;
                }
              }
            }
            if (cfg.mode == Mode::Lstm) {
              for (int o = 0; o < Ho; ++o) {
                double v = 0;
                if (cfg.projSize) {
                  for (int k = 0; k < H; ++k) v += t[4][o * H + k] * co[k];
                } else {
                  v = co[o];
                }
                h[o] = v;
              }
            }
            for (int o = 0; o < Ho; ++o) out[(tt * N + n) * D * Ho + d * Ho + o] = h[o];
          }
        }
      }
      in = out;
      width = D * Ho;
    }
    return std::vector<float>(in.begin(), in.end());
  }
};

// Random weights of a network, kept alive for the Network built from them.
struct Weights {
  Reference ref;
  std::vector<LayerWeights> layers;
  Weights(const Config& cfg, std::mt19937& rng) {
    ref.cfg = cfg;
    const int D = cfg.bidirectional ? 2 : 1, hidden = cfg.hiddenSize, Ho = cfg.projSize ? cfg.projSize : hidden;
    const int G = spec::gates(cfg.mode);
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt(static_cast<float>(hidden)),
                                            1.0f / std::sqrt(static_cast<float>(hidden)));
    for (int l = 0; l < cfg.numLayers; ++l) {
      for (int d = 0; d < D; ++d) {
        const int in = l ? D * Ho : cfg.inputSize;
        const int sizes[5] = {G * hidden * in, G * hidden * Ho, G * hidden, G * hidden, cfg.projSize * hidden};
        for (int s : sizes) {
          std::vector<float> v(s);
          for (auto& e : v) e = u(rng);
          ref.tensors.push_back(v);
        }
      }
    }
    for (int i = 0; i < cfg.numLayers * D; ++i) {
      const auto* t = &ref.tensors[i * 5];
      layers.push_back({t[0].data(), t[1].data(), cfg.bias ? t[2].data() : nullptr, cfg.bias ? t[3].data() : nullptr,
                        cfg.projSize ? t[4].data() : nullptr});
    }
  }
};

std::vector<float> randomInput(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0, 1);
  std::vector<float> x(n);
  for (auto& e : x) e = g(rng);
  return x;
}

void network(const Target& target, Mode mode, int inputSize, int hidden, int proj, int layers, bool bidi, bool bias,
             int T, int N, int threads, std::mt19937& rng) {
  const Config cfg{mode, inputSize, hidden, proj, layers, bidi, bias};
  const Weights weights(cfg, rng);
  const int D = bidi ? 2 : 1, Ho = proj ? proj : hidden;
  const std::vector<float> x = randomInput(static_cast<std::size_t>(T) * N * inputSize, rng);
  Network net(cfg, weights.layers.data(), *target.kernels);
  // No sequence is padded, so the outputs need not arrive zero-filled: as NaN, any element the
  // kernel leaves unwritten fails the comparison.
  std::vector<float> out(static_cast<std::size_t>(T) * N * D * Ho, std::nanf(""));
  std::vector<float> hN(layers * D * N * Ho, std::nanf("")), cN(layers * D * N * hidden, std::nanf(""));
  Call call;
  call.seqLen = T;
  call.batch = N;
  call.input = x.data();
  call.output = out.data();
  call.hN = hN.data();
  call.cN = mode == Mode::Lstm ? cN.data() : nullptr;
  call.threads = threads;
  net.forward(call);
  const auto expected = weights.ref.run(x, T, N);
  double err = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double d = std::fabs(static_cast<double>(out[i]) - expected[i]);
    err = d <= err ? err : d;  // a NaN stays
  }
  // The final states are written whole too (the reference checks the output only).
  auto unwritten = [](const std::vector<float>& v) {
    return static_cast<long>(std::count_if(v.begin(), v.end(), [](float f) { return std::isnan(f); }));
  };
  const long left = unwritten(hN) + (mode == Mode::Lstm ? unwritten(cN) : 0);
  char name[200];
  std::snprintf(name, sizeof name, "%s %s in %d hidden %d proj %d layers %d bidi %d bias %d T %d N %d threads %d",
                target.name.c_str(), spec::name(mode), inputSize, hidden, proj, layers, bidi, bias, T, N, threads);
  report(err <= 2e-5 && left == 0, name,
         format("max abs error %.3g against double (limit 2e-5), ", err) +
             format("%.0f state floats left unwritten", static_cast<double>(left)));
}

// The thread count only splits rows between threads: every count gives the same bits, with
// padded sequences, batch-first layout, a projection and every layer's output.
// The same bits for every thread count, over a plan's every kind of split: batch chunks, the
// column parts of a step (with a barrier per step; uneven panels; with a projection, parts that
// get no panel of W_hr) and the copy phases. main() sizes the pool to 8 threads, so that every
// split runs on any machine.
void threadInvariance(const Target& target, Mode mode, int T, int N, int I, int H, int P, int L, bool bidi,
                      std::mt19937& rng) {
  const int D = bidi ? 2 : 1, Ho = P ? P : H;
  const Config cfg{mode, I, H, P, L, bidi, true};
  const Weights weights(cfg, rng);
  const std::vector<float> x = randomInput(static_cast<std::size_t>(T) * N * I, rng);
  std::vector<int32_t> lengths(N);
  for (int i = 0; i < N; ++i) lengths[i] = 1 + (i * 7 + T / 2) % T;
  Network net(cfg, weights.layers.data(), *target.kernels);
  const std::size_t out = static_cast<std::size_t>(T) * N * D * Ho, states = static_cast<std::size_t>(L) * D * N;
  // Without outputs (only the final states wanted, as forward()'s output 'last' asks), the states
  // start as NaN, so that any the kernel leaves unwritten shows; `fill` is what the outputs arrive
  // holding (the padded steps' zeros, or NaN where no step is padded).
  auto run = [&](int threads, bool outputs = true, const int32_t* lens = nullptr, float fill = 0.0f,
                 bool batchFirst = true) {
    std::vector<float> result(out * (L + 1) + states * (Ho + H));
    std::fill(result.begin(), result.end() - (mode == Mode::Lstm ? 0 : states * H), fill);  // not cN's when none
    float* at = result.data();
    Call call;
    call.seqLen = T;
    call.batch = N;
    call.batchFirst = batchFirst;
    call.input = x.data();
    call.lengths = lens ? lens : lengths.data();
    call.output = outputs ? at : nullptr;
    call.layers = outputs ? at + out : nullptr;
    call.hN = at += out * (L + 1);
    call.cN = mode == Mode::Lstm ? at + states * Ho : nullptr;
    if (!outputs) std::fill(call.hN, call.hN + states * (mode == Mode::Lstm ? Ho + H : Ho), std::nanf(""));
    call.threads = threads;
    // This test runs more threads than a small machine's cores: teams that the gauge would shrink.
    detail::TeamGauge::shared().reset();
    net.forward(call);
    return result;
  };
  const std::vector<float> one = run(1);
  auto compare = [&](const std::vector<float>& many, const std::string& how,
                     const std::vector<float>& expected = {}, const std::string& of = "threads 1") {
    const std::vector<float>& base = expected.empty() ? one : expected;
    std::size_t differ = 0;
    for (std::size_t i = 0; i < base.size(); ++i) differ += std::memcmp(&base[i], &many[i], sizeof(float)) != 0;
    report(differ == 0,
           target.name + " " + spec::name(mode) + " N " + std::to_string(N) + " H " + std::to_string(H) +
               (P ? " P " + std::to_string(P) : "") + ": " + how + " give the bits of " + of,
           format("%.0f floats differ", static_cast<double>(differ)));
  };
  for (int threads : {2, 3, 5, 8}) compare(run(threads), "threads " + std::to_string(threads));
  // Each sequence alone (a batch of one never runs in groups, nor in batch chunks).
  std::vector<float> alone(one.size());
  for (int n = 0; n < N; ++n) {
    std::vector<float> result(out / N * (L + 1) + states / N * (Ho + H));
    float* at = result.data();
    Call call;
    call.seqLen = T;
    call.batch = 1;
    call.batchFirst = true;
    call.input = x.data() + static_cast<std::size_t>(n) * T * I;
    call.lengths = &lengths[n];
    call.output = at;
    call.layers = at += out / N;
    call.hN = at += out / N * L;
    call.cN = mode == Mode::Lstm ? at + states / N * Ho : nullptr;
    net.forward(call);
    // Into the batch's places: every (N, T, D * Ho) sequence block, every (L * D, N, F) state row.
    const std::size_t seq = out / N;
    for (int block = 0; block <= L; ++block) {
      std::memcpy(&alone[block * out + n * seq], &result[block * seq], seq * sizeof(float));
    }
    for (int ld = 0; ld < L * D; ++ld) {
      std::memcpy(&alone[out * (L + 1) + (ld * N + n) * Ho], &result[seq * (L + 1) + ld * Ho], Ho * sizeof(float));
      if (mode == Mode::Lstm) {
        std::memcpy(&alone[out * (L + 1) + states * Ho + (ld * N + n) * H],
                    &result[seq * (L + 1) + L * D * Ho + ld * H], H * sizeof(float));
      }
    }
  }
  compare(alone, "each sequence alone");
  // With no output at all: the same states, written in full (the outputs compared are threads 1's).
  for (int threads : {1, 3}) {
    std::vector<float> result = run(threads, false);
    std::copy(one.begin(), one.begin() + out * (L + 1), result.begin());
    compare(result, "no output, threads " + std::to_string(threads));
  }
  // With no sequence shorter than T (lengths all T), every element of every output is written:
  // outputs that arrive as NaN come back as those that arrive zero-filled, whose zero fill the
  // binding then skips (birnn.h's leavesPadding).
  // Time-major too, where the layers' outputs are computed in place.
  const std::vector<int32_t> whole(N, T);
  for (bool batchFirst : {true, false}) {
    for (int threads : {1, 3}) {
      const std::string how = std::string("lengths all T, ") + (batchFirst ? "batch-first" : "time-major") +
                              ", threads " + std::to_string(threads);
      compare(run(threads, true, whole.data(), std::nanf(""), batchFirst), "outputs arriving as NaN, " + how,
              run(threads, true, whole.data(), 0.0f, batchFirst), "zero-filled ones");
    }
  }
  // As forward() runs them: tasks on the pool, several at once, each computing on its own thread
  // and the workers it borrows.
  std::vector<std::vector<float>> results(3);
  std::atomic<int> done{0};
  const int counts[3] = {1, 3, 8};
  for (int i = 0; i < 3; ++i) {
    post(&results, std::make_unique<Posted>([&, i] {
           results[i] = run(counts[i]);
           ++done;
         }));
  }
  while (done.load() < 3) std::this_thread::yield();
  for (int i = 0; i < 3; ++i) compare(results[i], "posted tasks of threads " + std::to_string(counts[i]));
}

void networks(const Target& target, std::mt19937& rng) {
  for (const spec::ModeInfo& info : spec::kModes) {
    const Mode mode = info.mode;
    for (int hidden : {1, 7, 16, 33}) {
      network(target, mode, 5, hidden, 0, 2, true, true, 4, 3, 1, rng);
      network(target, mode, 3, hidden, 0, 3, false, false, 3, 13, 2, rng);
      if (mode == Mode::Lstm) network(target, mode, 4, hidden, 3, 2, true, true, 5, 2, 2, rng);
    }
    // Tails (kernel.h's PanelGeometry) of 3 and 4 units (AVX-512) and 2 (both AVX ISAs); 9 rows:
    // blocks of 5 or 4 rows and a rest, with a projection whose K (W_hh's) ends inside a vector.
    for (int hidden : {35, 36, 50}) network(target, mode, 9, hidden, 0, 2, true, true, 4, 9, 1, rng);
    if (mode == Mode::Lstm) network(target, mode, 9, 50, 21, 2, true, true, 4, 9, 2, rng);
    // K beyond one K block and more rows than one row block, with every kind of row tail.
    network(target, mode, 300, 150, 0, 2, true, true, 3, 201, 2, rng);
    // W_hh beyond the L2 budget, 17 rows: the tail rows in the panels' pass (kernel_impl.h).
    network(target, mode, 20, info.gates == 1 ? 600 : 300, 0, 1, true, true, 3, 17, 2, rng);
  }
  // The seed's RNN: 50 hidden units, whose last panel is a narrow one on AVX2 (kernel.h), with
  // full tiles and tails of both widths.
  network(target, Mode::RnnTanh, 25, 50, 0, 4, true, true, 6, 64, 1, rng);
  network(target, Mode::RnnRelu, 25, 50, 0, 2, true, true, 6, 29, 2, rng);
  // Groups of sequences (small weights), each whole on one thread; and batch chunks with the copy
  // phases on several threads (weights beyond ThreadPlan's groups).
  threadInvariance(target, Mode::Lstm, 48, 48, 96, 64, 24, 3, true, rng);
  threadInvariance(target, Mode::Gru, 12, 40, 16, 160, 0, 2, true, rng);
  threadInvariance(target, Mode::RnnTanh, 30, 37, 25, 50, 0, 4, true, rng);
  // Column parts: few rows, many panels.
  // (200 hidden units: with AVX2, the last part's last panel is narrow.)
  for (const spec::ModeInfo& info : spec::kModes) threadInvariance(target, info.mode, 40, 3, 20, 200, 0, 2, true, rng);
  threadInvariance(target, Mode::RnnTanh, 30, 40, 25, 50, 0, 2, true, rng);
  // Tails (kernel.h's PanelGeometry): H % lanes of 2 on AVX2 and AVX-512, in groups and in column
  // parts, with a projection (whose K, W_hh's, ends inside a vector) and without.
  threadInvariance(target, Mode::Lstm, 20, 33, 18, 50, 21, 2, true, rng);
  threadInvariance(target, Mode::Gru, 40, 3, 20, 226, 0, 2, true, rng);
  // Column parts whose share of W_hh is beyond the L2 budget or not, as the thread count goes.
  threadInvariance(target, Mode::Lstm, 6, 11, 20, 300, 0, 1, false, rng);
  threadInvariance(target, Mode::Lstm, 40, 3, 20, 400, 40, 2, false, rng);
}

void test(const Target& target) {
  std::mt19937 rng(1234);
  activations(target);
  networks(target, rng);
}

}  // namespace

int usage(const char* program) {
  std::fprintf(stderr, "usage: %s [generic|avx2|avx512|neon|wide16|plan|memory]\n", program);
  return 2;
}

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each result as it comes, also through a pipe
  setenv("BIRNN_POOL_THREADS", "8", 0);        // threadInvariance's splits, on any machine
  const Target wide{"wide16", &detail::kernelsWide16()};
  if (argc > 2) return usage(argv[0]);
  if (argc == 2 && std::string(argv[1]) == "plan") {
    plans();
    geometry();
    barrier();
    posting();
    leasing();
  } else if (argc == 2 && std::string(argv[1]) == "memory") {
    memory();
  } else if (argc == 1) {
    plans();
    geometry();
    barrier();
    posting();
    leasing();
    memory();
    for (const spec::IsaInfo& info : spec::kIsas) {
      if (isaSupported(info.isa)) {
        test({info.name, &detail::kernelsFor(info.isa)});
      } else {
        std::printf("skip %s: not supported by this CPU (wide16 runs its geometry in portable code)\n", info.name);
      }
    }
    test(wide);
  } else if (argv[1] == wide.name) {
    test(wide);
  } else {
    Isa isa;
    try {
      isa = parseIsa(argv[1]);
    } catch (const std::invalid_argument&) {
      return usage(argv[0]);
    }
    if (!isaSupported(isa)) {
      std::printf("skip %s: not supported by this CPU\n", argv[1]);
      return kSkipped;
    }
    test({isaName(isa), &detail::kernelsFor(isa)});
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
