// Times the kernel alone, from C++ (no Node): wall time per forward, best of many runs, so a
// busy shared machine shows as noise. Not CPU time: the work runs on the worker pool, and the
// process clock accounts a thread still running on another core only at its next tick (runs
// of a few ms then read as impossibly fast). Usage: birnn_kernel_bench [generic|avx2|avx512] [workload name filter]
// `birnn_kernel_bench <isa> scaling [threads]` times the two phases of a W-b64 LSTM layer alone,
// on 1 thread and on `threads` (default: every hardware thread) started together, with no pool and no plan:
// the input projection of layer 1 (row chunks taken in turn, four a thread) and the recurrence
// (batch chunks of 4, 8 or 16 rows taken in turn), and how much longer the slowest thread ran
// than the fastest. It shows what a many-core machine gives independent work (issue #9).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "birnn.h"
#include "kernels/kernel.h"

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

// fn(tid) on `threads` threads released together; wall seconds to the last one's end, and the
// ratio of the slowest thread's own time to the fastest's (of those that took work: fn returns
// whether it did).
std::pair<double, double> together(int threads, const std::function<bool(int)>& fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> spent(threads), ends(threads);
  std::vector<char> worked(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ++ready;
      while (!go.load()) {
      }
      const double start = seconds();
      worked[t] = fn(t);
      ends[t] = seconds();
      spent[t] = ends[t] - start;
    });
  }
  while (ready.load() < threads) {
  }
  const double start = seconds();
  go = true;
  for (auto& th : pool) th.join();
  double slowest = 0, fastest = 1e9;
  for (int t = 0; t < threads; ++t) {
    if (worked[t]) slowest = std::max(slowest, spent[t]), fastest = std::min(fastest, spent[t]);
  }
  return {*std::max_element(ends.begin(), ends.end()) - start, slowest / fastest};
}

void scaling(Isa isa, int many) {
  const detail::Kernels& k = detail::kernelsFor(isa);
  const detail::PanelGeometry geo = detail::geometryFor(Mode::Lstm, 256, k.lanes, k.tailUnits);
  const int W = geo.width(), P = geo.panels, cols = geo.paddedColumns();
  const int T = 100, N = 64, D = 2, K1 = 512, H = 256, rows = T * N;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  auto random = [&](std::size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
  };
  const std::vector<float> X = random(static_cast<std::size_t>(rows) * K1), bias = random(cols);
  const std::vector<float> Wih[2] = {random(static_cast<std::size_t>(K1) * cols), random(static_cast<std::size_t>(K1) * cols)};
  const std::vector<float> Whh[2] = {random(static_cast<std::size_t>(H) * cols), random(static_cast<std::size_t>(H) * cols)};
  std::vector<float> proj[2] = {std::vector<float>(static_cast<std::size_t>(rows) * cols),
                                std::vector<float>(static_cast<std::size_t>(rows) * cols)};
  auto report = [](const char* what, int threads, double best, double spread, double flops) {
    std::printf("%-34s %2d threads %8.2f ms %7.0f GFLOP/s  slowest/fastest thread %.2f\n", what, threads, best * 1e3,
                flops / best * 1e-9, spread);
  };
  for (int threads : {1, many}) {
    const int chunks = threads == 1 ? 1 : 4 * ((threads + D - 1) / D);  // per direction, as the plan
    double best = 1e9, spread = 0;
    for (int rep = 0; rep < 7; ++rep) {
      std::atomic<int> next{0};
      const auto [wall, ratio] = together(threads, [&](int) {
        bool worked = false;
        for (int task; (task = next.fetch_add(1)) < D * chunks; worked = true) {
          const int d = task % D, c = task / D, r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
          detail::GemmArgs g;
          g.m = r1 - r0;
          g.K = K1;
          g.A = X.data() + static_cast<std::ptrdiff_t>(r0) * K1;
          g.lda = K1;
          g.B = Wih[d].data();
          g.panels = P;
          g.width = g.lastWidth = W;
          g.bias = bias.data();
          g.C = proj[d].data() + static_cast<std::ptrdiff_t>(r0) * cols;
          g.ldc = cols;
          k.gemm(g);
        }
        return worked;
      });
      if (wall < best) best = wall, spread = ratio;
    }
    report("input projection, layer 1", threads, best, spread, 2.0 * D * rows * K1 * cols);
  }
  for (int chunkRows : {4, 8, 16}) {
    for (int threads : {1, many}) {
      const int chunks = D * N / chunkRows;
      double best = 1e9, spread = 0;
      for (int rep = 0; rep < 7; ++rep) {
        std::atomic<int> next{0};
        const auto [wall, ratio] = together(threads, [&](int) {
          std::vector<float> h[2] = {std::vector<float>(chunkRows * H), std::vector<float>(chunkRows * H)};
          std::vector<float> c(chunkRows * H);
          std::vector<const float*> prow(chunkRows);
          bool worked = false;
          for (int task; (task = next.fetch_add(1)) < chunks; worked = true) {
            const int d = task % D, b0 = task / D * chunkRows;
            for (int s = 0; s < T; ++s) {
              for (int i = 0; i < chunkRows; ++i) prow[i] = proj[d].data() + (static_cast<std::ptrdiff_t>(s) * N + b0 + i) * cols;
              detail::StepArgs st;
              st.mode = Mode::Lstm;
              st.geo = geo;
              st.panelEnd = P;
              st.m = chunkRows;
              st.K = H;
              st.hPrev = h[s % 2].data();
              st.ldh = H;
              st.Whh = Whh[d].data();
              st.P = prow.data();
              st.c = c.data();
              st.ldc = H;
              st.hNext = h[1 - s % 2].data();
              st.ldn = H;
              k.step(st);
            }
          }
          return worked;
        });
        if (wall < best) best = wall, spread = ratio;
      }
      char what[64];
      std::snprintf(what, sizeof what, "recurrence, chunks of %d rows", chunkRows);
      report(what, threads, best, spread, 2.0 * D * rows * H * cols);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Isa isa = argc > 1 ? parseIsa(argv[1]) : detectIsa();
  if (argc > 2 && std::string(argv[2]) == "scaling") {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    scaling(isa, argc > 3 ? std::max(1, std::atoi(argv[3])) : cores);
    return 0;
  }
  const Workload workloads[] = {
      {"W-seed", Mode::RnnTanh, 25, 50, 4, 5, 15, true},  {"W-b1 rnn", Mode::RnnTanh, 128, 256, 2, 100, 1, true},
      {"W-b1 lstm", Mode::Lstm, 128, 256, 2, 100, 1, true}, {"W-b64 rnn", Mode::RnnTanh, 128, 256, 2, 100, 64, true},
      {"W-b64 gru", Mode::Gru, 128, 256, 2, 100, 64, true}, {"W-b64 lstm", Mode::Lstm, 128, 256, 2, 100, 64, true},
      {"h64 lstm", Mode::Lstm, 128, 64, 1, 100, 16, true},
      // Issue #9's small models at batch 64: most served models are this size.
      {"S-b64 lstm", Mode::Lstm, 32, 64, 1, 100, 64, true},  {"S-b64 seed", Mode::RnnTanh, 25, 50, 4, 100, 64, true},
      // Hidden sizes 2 past a vector: tails (kernels/kernel.h) on AVX-512 and AVX2.
      {"tail lstm", Mode::Lstm, 32, 50, 1, 100, 64, true},  {"tail gru", Mode::Gru, 32, 50, 2, 100, 64, true},
      {"tail b1", Mode::Lstm, 32, 50, 2, 100, 1, true},
  };
  for (const auto& w : workloads) {
    if (argc < 3 || std::string(w.name).find(argv[2]) != std::string::npos) run(w, isa);
  }
}
