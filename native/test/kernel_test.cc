// Plain C++ tests of the kernel, run on every instruction set this CPU has:
//  - vectorized tanh and sigmoid against double precision over the whole float range;
//  - the Network against a double-precision scalar reference, for every mode and option.
// Build: cmake -S . -B build-kernel -DBIRNN_KERNEL_TESTS=ON && cmake --build build-kernel
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "birnn.h"
#include "kernel.h"

using namespace birnn;

namespace birnn::detail {
const Kernels& kernelsWide16();  // kernel_wide.cc
}

namespace {

int failures = 0;

void check(bool ok, const char* what, double value) {
  if (!ok) {
    std::printf("FAIL %s (%g)\n", what, value);
    ++failures;
  }
}

// Every 97th float bit pattern (both signs, all exponents, NaN and infinities included).
void activations(const detail::Kernels& k) {
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
  double maxTanh = 0, maxSigmoid = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      check(std::isnan(yt[i]) && std::isnan(ys[i]), "NaN in gives NaN out", x[i]);
      continue;
    }
    const double t = std::tanh(static_cast<double>(x[i]));
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
    maxTanh = std::max(maxTanh, std::fabs(yt[i] - t));
    maxSigmoid = std::max(maxSigmoid, std::fabs(ys[i] - s));
  }
  std::printf("  %-8s tanh max abs error %.3g, sigmoid %.3g over %zu floats\n", isaName(k.isa), maxTanh, maxSigmoid, x.size());
  check(maxTanh <= 1e-6, "tanh max abs error <= 1e-6", maxTanh);
  check(maxSigmoid <= 1e-6, "sigmoid max abs error <= 1e-6", maxSigmoid);
  const float big[4] = {1e30f, -1e30f, INFINITY, -INFINITY};
  float ot[4], os[4];
  k.tanh(big, ot, 4);
  k.sigmoid(big, os, 4);
  check(ot[0] == 1 && ot[1] == -1 && ot[2] == 1 && ot[3] == -1, "tanh saturates to +-1", ot[0]);
  check(os[0] == 1 && os[1] == 0 && os[2] == 1 && os[3] == 0, "sigmoid saturates to 0 and 1", os[1]);
}

// Straightforward double-precision reference of one forward pass (no lengths, time-major).
struct Reference {
  Config cfg;
  std::vector<std::vector<float>> tensors;  // per (layer, dir): wih, whh, bih, bhh, whr
  std::vector<float> run(const std::vector<float>& x, int T, int N) const {
    const int D = cfg.bidirectional ? 2 : 1, H = cfg.hiddenSize, Ho = cfg.projSize ? cfg.projSize : H;
    const int G = cfg.mode == Mode::Lstm ? 4 : cfg.mode == Mode::Gru ? 3 : 1;
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

void network(const detail::Kernels& kernels, Mode mode, int inputSize, int hidden, int proj, int layers, bool bidi, bool bias, int T, int N,
             int threads, std::mt19937& rng) {
  Reference ref;
  ref.cfg = Config{mode, inputSize, hidden, proj, layers, bidi, bias};
  const int D = bidi ? 2 : 1, Ho = proj ? proj : hidden;
  const int G = mode == Mode::Lstm ? 4 : mode == Mode::Gru ? 3 : 1;
  std::uniform_real_distribution<float> u(-1.0f / std::sqrt(static_cast<float>(hidden)), 1.0f / std::sqrt(static_cast<float>(hidden)));
  std::vector<LayerWeights> lw;
  for (int l = 0; l < layers; ++l) {
    for (int d = 0; d < D; ++d) {
      const int in = l ? D * Ho : inputSize;
      const int sizes[5] = {G * hidden * in, G * hidden * Ho, G * hidden, G * hidden, proj * hidden};
      for (int s : sizes) {
        std::vector<float> v(s);
        for (auto& e : v) e = u(rng);
        ref.tensors.push_back(v);
      }
    }
  }
  for (int i = 0; i < layers * D; ++i) {
    const auto* t = &ref.tensors[i * 5];
    lw.push_back({t[0].data(), t[1].data(), bias ? t[2].data() : nullptr, bias ? t[3].data() : nullptr,
                  proj ? t[4].data() : nullptr});
  }
  std::normal_distribution<float> g(0, 1);
  std::vector<float> x(static_cast<std::size_t>(T) * N * inputSize);
  for (auto& e : x) e = g(rng);
  Network net(ref.cfg, lw.data(), kernels);
  std::vector<float> out(static_cast<std::size_t>(T) * N * D * Ho), hN(layers * D * N * Ho), cN(layers * D * N * hidden);
  Call call;
  call.seqLen = T;
  call.batch = N;
  call.input = x.data();
  call.output = out.data();
  call.hN = hN.data();
  call.cN = mode == Mode::Lstm ? cN.data() : nullptr;
  call.threads = threads;
  net.forward(call);
  const auto expected = ref.run(x, T, N);
  double err = 0;
  for (std::size_t i = 0; i < out.size(); ++i) err = std::max(err, static_cast<double>(std::fabs(out[i] - expected[i])));
  char what[160];
  std::snprintf(what, sizeof what, "%s/%d mode %d in %d hidden %d proj %d layers %d bidi %d bias %d T %d N %d threads %d",
                isaName(kernels.isa), kernels.lanes, static_cast<int>(mode), inputSize, hidden, proj, layers, bidi, bias, T, N, threads);
  check(err <= 2e-5, what, err);
}

void networks(const detail::Kernels& k, std::mt19937& rng) {
  for (Mode mode : {Mode::RnnTanh, Mode::RnnRelu, Mode::Gru, Mode::Lstm}) {
    for (int hidden : {1, 7, 16, 33}) {
      network(k, mode, 5, hidden, 0, 2, true, true, 4, 3, 1, rng);
      network(k, mode, 3, hidden, 0, 3, false, false, 3, 13, 2, rng);
      if (mode == Mode::Lstm) network(k, mode, 4, hidden, 3, 2, true, true, 5, 2, 2, rng);
    }
    // K beyond one K block and more rows than one row block, with every kind of row tail.
    network(k, mode, 300, 150, 0, 2, true, true, 3, 201, 2, rng);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
    if (!isaSupported(isa)) {
      std::printf("  %-8s not supported by this CPU: its geometry runs below in portable code\n", isaName(isa));
      continue;
    }
    activations(detail::kernelsFor(isa));
    networks(detail::kernelsFor(isa), rng);
  }
  std::printf("  AVX-512 geometry (16 lanes, 24 accumulators) in portable code\n");
  activations(detail::kernelsWide16());
  networks(detail::kernelsWide16(), rng);
  std::printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
  return failures ? 1 : 0;
}
