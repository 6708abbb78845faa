// Times the kernel alone, from C++ (no Node): wall time per forward, best of many runs, so a
// busy shared machine shows as noise. Not CPU time: the work runs on the worker pool, and the
// process clock accounts a thread still running on another core only at its next tick (runs
// of a few ms then read as impossibly fast). Usage: birnn_kernel_bench [generic|avx2|avx512] [workload name filter]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "birnn.h"

using namespace birnn;

namespace {

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Workload {
  const char* name;
  Mode mode;
  int I, H, L, T, N;
  bool bidi;
};

void run(const Workload& w, Isa isa) {
  const int D = w.bidi ? 2 : 1, G = spec::gates(w.mode);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  std::vector<std::vector<float>> store;
  std::vector<LayerWeights> lw;
  for (int l = 0; l < w.L; ++l) {
    for (int d = 0; d < D; ++d) {
      const int in = l ? D * w.H : w.I;
      for (int size : {G * w.H * in, G * w.H * w.H, G * w.H, G * w.H}) {
        store.emplace_back(size);
        for (auto& v : store.back()) v = u(rng);
      }
      const auto* t = &store[store.size() - 4];
      lw.push_back({t[0].data(), t[1].data(), t[2].data(), t[3].data(), nullptr});
    }
  }
  Network net(Config{w.mode, w.I, w.H, 0, w.L, w.bidi, true}, lw.data(), isa);
  std::vector<float> x(static_cast<size_t>(w.T) * w.N * w.I), out(static_cast<size_t>(w.T) * w.N * D * w.H),
      hN(w.L * D * w.N * w.H), cN(w.L * D * w.N * w.H);
  for (auto& v : x) v = u(rng);
  Call call;
  call.seqLen = w.T;
  call.batch = w.N;
  call.input = x.data();
  call.output = out.data();
  call.hN = hN.data();
  call.cN = cN.data();
  call.threads = 1;
  double flops = 0;
  for (int l = 0; l < w.L; ++l) flops += 2.0 * w.T * w.N * G * w.H * ((l ? D * w.H : w.I) + w.H) * D;
  double best = 1e9;
  const double until = seconds() + 2.0;
  int runs = 0;
  while (seconds() < until || runs < 5) {
    const double start = seconds();
    net.forward(call);
    best = std::min(best, seconds() - start);
    ++runs;
  }
  std::printf("%-10s %-8s %10.1f us  %6.1f GFLOP/s (1 thread, %d runs)\n", w.name, isaName(isa), best * 1e6,
              flops / best * 1e-9, runs);
}

}  // namespace

int main(int argc, char** argv) {
  const Isa isa = argc > 1 ? parseIsa(argv[1]) : detectIsa();
  const Workload workloads[] = {
      {"W-seed", Mode::RnnTanh, 25, 50, 4, 5, 15, true},  {"W-b1 rnn", Mode::RnnTanh, 128, 256, 2, 100, 1, true},
      {"W-b1 lstm", Mode::Lstm, 128, 256, 2, 100, 1, true}, {"W-b64 rnn", Mode::RnnTanh, 128, 256, 2, 100, 64, true},
      {"W-b64 gru", Mode::Gru, 128, 256, 2, 100, 64, true}, {"W-b64 lstm", Mode::Lstm, 128, 256, 2, 100, 64, true},
      {"h64 lstm", Mode::Lstm, 128, 64, 1, 100, 16, true},
      // Issue #9's small models at batch 64: most served models are this size.
      {"S-b64 lstm", Mode::Lstm, 32, 64, 1, 100, 64, true},  {"S-b64 seed", Mode::RnnTanh, 25, 50, 4, 100, 64, true},
  };
  for (const auto& w : workloads) {
    if (argc < 3 || std::string(w.name).find(argv[2]) != std::string::npos) run(w, isa);
  }
}
