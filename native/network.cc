// Orchestration of a forward pass: weight packing at construction; per call, the layer loop,
// the input projection of every time step as one GEMM per direction, the recurrence over the
// batch rows still inside their sequences, and the threads. The arithmetic is in the kernels.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <system_error>
#include <memory>
#include <mutex>
#include <new>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "birnn.h"
#include "kernel.h"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define BIRNN_MMAP 1
#else
#define BIRNN_MMAP 0
#endif

namespace birnn {

namespace {

using detail::Geometry;
using idx = std::ptrdiff_t;

// Storage on 64-byte boundaries (a cache line, a full AVX-512 vector). Large buffers are mapped
// straight from the OS and unmapped when freed: the work buffers of one call can be tens of MB,
// and glibc would otherwise keep them in the arenas of the libuv threads that freed them.
template <typename T>
struct Aligned {
  using value_type = T;
  static constexpr std::size_t kMapped = std::size_t(1) << 20;
  Aligned() = default;
  template <typename U>
  Aligned(const Aligned<U>&) {}
  T* allocate(std::size_t n) {
#if BIRNN_MMAP
    if (n * sizeof(T) >= kMapped) {
      void* p = mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      return static_cast<T*>(p);
    }
#endif
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T* p, std::size_t n) {
#if BIRNN_MMAP
    if (n * sizeof(T) >= kMapped) {
      munmap(p, n * sizeof(T));
      return;
    }
#endif
    (void)n;
    ::operator delete(p, std::align_val_t(64));
  }
  // resize() leaves floats uninitialised: the work buffers are written before they are read, and
  // zero-filling tens of MB on the calling thread would serialise what the threads do in parallel.
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <typename U>
  bool operator==(const Aligned<U>&) const { return true; }
  template <typename U>
  bool operator!=(const Aligned<U>&) const { return false; }
};
using Floats = std::vector<float, Aligned<float>>;

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// PyTorch's [G*H, K] gate matrix regrouped into the panel layout of kernel.h.
Floats packGates(const float* w, int K, int H, const Geometry& geo) {
  const int PW = geo.width();
  Floats out(static_cast<std::size_t>(geo.panels) * K * PW, 0.0f);
  for (int p = 0; p < geo.panels; ++p) {
    for (int g = 0; g < geo.G; ++g) {
      for (int u = 0; u < geo.units; ++u) {
        const int unit = p * geo.units + u;
        if (unit >= H) break;
        const float* row = w + (static_cast<idx>(g) * H + unit) * K;
        float* col = out.data() + static_cast<idx>(p) * K * PW + g * geo.units + u;
        for (int k = 0; k < K; ++k) col[static_cast<idx>(k) * PW] = row[k];
      }
    }
  }
  return out;
}

// A bias (or any per-gate vector of G*H values) in the same interleaved column order.
Floats packGateVector(const float* v, int H, const Geometry& geo) {
  Floats out(geo.paddedColumns(), 0.0f);
  for (int p = 0; p < geo.panels; ++p) {
    for (int g = 0; g < geo.G; ++g) {
      for (int u = 0; u < geo.units && p * geo.units + u < H; ++u) {
        out[static_cast<idx>(p) * geo.width() + g * geo.units + u] = v[static_cast<idx>(g) * H + p * geo.units + u];
      }
    }
  }
  return out;
}

// W_hr [Hout, H] as the B operand of cellOut [m, H] x W_hr^T, in panels of `width` columns.
Floats packProjection(const float* w, int Hout, int H, int width, int panels) {
  Floats out(static_cast<std::size_t>(panels) * H * width, 0.0f);
  for (int o = 0; o < Hout; ++o) {
    float* col = out.data() + static_cast<idx>(o / width) * H * width + o % width;
    for (int k = 0; k < H; ++k) col[static_cast<idx>(k) * width] = w[static_cast<idx>(o) * H + k];
  }
  return out;
}

// A reusable barrier for the threads of one forward call. Waiters spin briefly (the phases it
// separates are often short, and the other thread is usually about to arrive), then sleep.
// abort() releases every waiter for good (wait() then returns false), for when a thread of the
// call could not be started.
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  bool wait() {
    const long generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      arrived_.store(0, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.store(generation + 1, std::memory_order_release);
      cv_.notify_all();
      return !aborted_.load();
    }
    for (int spin = 0; spin < 2000; ++spin) {
      if (generation_.load(std::memory_order_acquire) != generation || aborted_.load()) return !aborted_.load();
      std::this_thread::yield();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return aborted_.load() || generation_.load(std::memory_order_acquire) != generation; });
    return !aborted_.load();
  }
  void abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_.store(true);
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  const int count_;
  std::atomic<int> arrived_{0};
  std::atomic<long> generation_{0};
  std::atomic<bool> aborted_{false};
};

}  // namespace

struct PackedLayer {
  int in = 0;
  Floats wih, whh, bias, bhn, whr;
};

// The work buffers of one call, kept for the next: fresh multi-MB buffers would cost a page
// fault per 4 KB on every call. Sized per call with resize(), which only grows capacity.
struct Workspace {
  struct Rows {  // one (direction, batch chunk) task's recurrent state
    Floats h[2], c, cellOut;
    std::vector<const float*> prow;
  };
  std::vector<Floats> P;  // per direction: the input projection of every time step
  Floats layerOut[2];     // layer outputs between layers, when the caller wants none
  std::vector<Rows> rows;
};

struct Network::Impl {
  Config cfg;
  Isa isa;
  const detail::Kernels* k = nullptr;
  Geometry geo;
  int H = 0, Hout = 0, D = 1;
  int projWidth = 0, projPanels = 0;
  std::vector<PackedLayer> layers;  // numLayers * D, layer-major, direction-minor

  // Idle workspaces; concurrent calls each take their own.
  mutable std::mutex poolMutex;
  mutable std::vector<std::unique_ptr<Workspace>> pool;
  static constexpr std::size_t kPoolSize = 4;

  std::unique_ptr<Workspace> acquire() const {
    std::lock_guard<std::mutex> lock(poolMutex);
    if (pool.empty()) return std::make_unique<Workspace>();
    auto ws = std::move(pool.back());
    pool.pop_back();
    return ws;
  }
  void release(std::unique_ptr<Workspace> ws) const {
    std::lock_guard<std::mutex> lock(poolMutex);
    if (pool.size() < kPoolSize) pool.push_back(std::move(ws));
  }

  void run(const Call& call) const;
};

Network::Network(const Config& config, const LayerWeights* weights, Isa isa)
    : Network(config, weights, detail::kernelsFor(isa)) {}

Network::Network(const Config& config, const LayerWeights* weights, const detail::Kernels& kernels)
    : impl_(new Impl) {
  Impl& n = *impl_;
  require(config.inputSize > 0 && config.hiddenSize > 0 && config.numLayers > 0,
          "config: inputSize, hiddenSize and numLayers must be positive");
  require(config.projSize >= 0, "config: projSize must not be negative");
  require(config.projSize == 0 || config.mode == Mode::Lstm, "config: only an LSTM has a projection");
  require(config.mode >= Mode::RnnTanh && config.mode <= Mode::Lstm, "config: unknown mode");
  require(weights != nullptr, "weights: missing");
  n.cfg = config;
  n.isa = kernels.isa;
  n.k = &kernels;
  n.H = config.hiddenSize;
  n.Hout = config.projSize ? config.projSize : config.hiddenSize;
  n.D = config.bidirectional ? 2 : 1;
  n.geo = detail::geometryFor(config.mode, n.H, n.k->lanes);
  n.projWidth = 2 * n.k->lanes;
  n.projPanels = (n.Hout + n.projWidth - 1) / n.projWidth;
  const int G = n.geo.G;
  for (int l = 0; l < config.numLayers; ++l) {
    for (int d = 0; d < n.D; ++d) {
      const LayerWeights& w = weights[l * n.D + d];
      const std::string where = "weights[layer " + std::to_string(l) + (d ? ", reverse]" : "]");
      require(w.wIh && w.wHh, where + ": weight_ih and weight_hh are required");
      require(!config.bias || (w.bIh && w.bHh), where + ": bias_ih and bias_hh are required");
      require(!config.projSize || w.wHr, where + ": weight_hr is required with a projection");
      PackedLayer p;
      p.in = l == 0 ? config.inputSize : n.D * n.Hout;
      p.wih = packGates(w.wIh, p.in, n.H, n.geo);
      p.whh = packGates(w.wHh, n.Hout, n.H, n.geo);
      // Summed biases seed the input projection; the GRU's b_hn stays apart since r scales it.
      std::vector<float> bias(static_cast<std::size_t>(G) * n.H, 0.0f);
      if (config.bias) {
        for (int i = 0; i < G * n.H; ++i) {
          const bool gruNewGate = config.mode == Mode::Gru && i >= 2 * n.H;
          bias[i] = gruNewGate ? w.bIh[i] : w.bIh[i] + w.bHh[i];
        }
      }
      p.bias = packGateVector(bias.data(), n.H, n.geo);
      if (config.mode == Mode::Gru) {
        p.bhn.assign(n.geo.paddedUnits(), 0.0f);
        if (config.bias) std::copy(w.bHh + 2 * n.H, w.bHh + 3 * n.H, p.bhn.begin());
      }
      if (config.projSize) p.whr = packProjection(w.wHr, n.Hout, n.H, n.projWidth, n.projPanels);
      n.layers.push_back(std::move(p));
    }
  }
}

Network::~Network() = default;
const Config& Network::config() const { return impl_->cfg; }
Isa Network::isa() const { return impl_->isa; }

void Network::forward(const Call& call) const {
  const Impl& n = *impl_;
  require(call.seqLen > 0, "seqLen: expected at least 1, received " + std::to_string(call.seqLen));
  require(call.batch > 0, "batch: expected at least 1, received " + std::to_string(call.batch));
  require(call.input && call.output && call.hN, "input, output and hN are required");
  require(n.cfg.mode == Mode::Lstm || !call.c0, "c0: only an LSTM has a cell state");
  require(call.threads > 0, "threads: expected at least 1, received " + std::to_string(call.threads));
  if (call.lengths) {
    for (int i = 0; i < call.batch; ++i) {
      require(call.lengths[i] >= 1 && call.lengths[i] <= call.seqLen,
              "lengths[" + std::to_string(i) + "]: expected a length in [1, " + std::to_string(call.seqLen) +
                  "], received " + std::to_string(call.lengths[i]));
    }
  }
  n.run(call);
}

void Network::Impl::run(const Call& call) const {
  const int T = call.seqLen, N = call.batch, L = cfg.numLayers;
  const bool lstm = cfg.mode == Mode::Lstm;
  const bool proj = cfg.projSize > 0;
  const int Hp = geo.paddedUnits();
  const idx rows = static_cast<idx>(T) * N;
  const idx ldP = geo.paddedColumns();
  const int outWidth = D * Hout;
  const idx outSize = rows * outWidth;
  // The hidden state feeds the next step's GEMM (K = Hout); with a projection it is written by
  // the projection GEMM in whole panels, otherwise by the cell update in whole panels of units.
  const idx ldh = proj ? static_cast<idx>(projPanels) * projWidth : Hp;

  std::vector<int> len(N, T);
  if (call.lengths) std::copy(call.lengths, call.lengths + N, len.begin());
  const bool padded = std::any_of(len.begin(), len.end(), [&](int v) { return v < T; });
  // Batch rows sorted by length, longest first: at step s the rows still running are a prefix.
  std::vector<int> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return len[a] > len[b]; });
  auto rowOf = [&](int t, int b) -> idx {
    return call.batchFirst ? static_cast<idx>(b) * T + t : static_cast<idx>(t) * N + b;
  };

  // Threads: the directions run side by side, then the batch is split further while each part
  // keeps enough work to pay for a thread. Results never depend on the split.
  // A thread costs tens of microseconds (start, join, a barrier per phase): worth it only when
  // each layer has millions of multiply-adds to share.
  const double layerFlops = 2.0 * rows * geo.G * H * (std::max(cfg.inputSize, D * Hout) + Hout) * D;
  int threads = std::min(call.threads, static_cast<int>(std::max(1.0, layerFlops / 4e6)));
  const int chunks = std::max(1, std::min(N, threads / D));
  const int projChunks = std::max(1, std::min<int>(static_cast<int>(rows), threads / D));
  threads = std::max(1, std::min(threads, D * std::max(chunks, projChunks)));

  // Written in full before they are read (padded steps of the layer outputs are cleared below).
  std::unique_ptr<Workspace> ws = acquire();
  std::vector<Floats>& P = ws->P;
  P.resize(D);
  for (auto& p : P) p.resize(static_cast<std::size_t>(rows * ldP));
  Floats(&scratch)[2] = ws->layerOut;
  const bool ownLayers = call.layers == nullptr;
  if (ownLayers && L > 1) scratch[0].resize(static_cast<std::size_t>(outSize));
  if (ownLayers && L > 2) scratch[1].resize(static_cast<std::size_t>(outSize));
  auto layerOutput = [&](int l) -> float* {
    if (!ownLayers) return call.layers + l * outSize;
    return l == L - 1 ? call.output : scratch[l % 2].data();
  };

  auto project = [&](int l, int d, int chunk) {
    const PackedLayer& w = layers[l * D + d];
    const float* X = l == 0 ? call.input : layerOutput(l - 1);
    const idx r0 = rows * chunk / projChunks, r1 = rows * (chunk + 1) / projChunks;
    detail::GemmArgs g;
    g.m = static_cast<int>(r1 - r0);
    g.K = w.in;
    g.A = X + r0 * w.in;
    g.lda = w.in;
    g.B = w.wih.data();
    g.panels = geo.panels;
    g.width = geo.width();
    g.bias = w.bias.data();
    g.C = P[d].data() + r0 * ldP;
    g.ldc = ldP;
    if (g.m > 0) k->gemm(g);
  };

  // Per (direction, chunk) state, allocated before any thread starts so that no thread throws.
  std::vector<Workspace::Rows>& rowStates = ws->rows;
  rowStates.resize(static_cast<std::size_t>(D) * chunks);
  for (int task = 0; task < D * chunks; ++task) {
    const int chunk = task / D, nb = N * (chunk + 1) / chunks - N * chunk / chunks;
    Workspace::Rows& rs = rowStates[task];
    for (auto& hh : rs.h) hh.resize(static_cast<std::size_t>(nb) * ldh);
    rs.c.resize(lstm ? static_cast<std::size_t>(nb) * Hp : 0);
    rs.cellOut.resize(proj ? static_cast<std::size_t>(nb) * Hp : 0);
    rs.prow.resize(nb);
  }

  auto recur = [&](int l, int d, int chunk) {
    const PackedLayer& w = layers[l * D + d];
    const int a = N * chunk / chunks, b = N * (chunk + 1) / chunks, nb = b - a;
    if (nb == 0) return;
    const int state = l * D + d;
    float* Y = layerOutput(l);
    Workspace::Rows& rs = rowStates[static_cast<std::size_t>(chunk) * D + d];
    Floats(&h)[2] = rs.h;
    Floats& c = rs.c;
    Floats& cellOut = rs.cellOut;
    std::vector<const float*>& prow = rs.prow;
    std::fill(h[0].begin(), h[0].end(), 0.0f);
    std::fill(c.begin(), c.end(), 0.0f);
    for (int i = 0; i < nb; ++i) {
      const idx sn = static_cast<idx>(state) * N + order[a + i];
      if (call.h0) std::memcpy(&h[0][i * ldh], call.h0 + sn * Hout, sizeof(float) * Hout);
      if (call.c0) std::memcpy(&c[i * Hp], call.c0 + sn * H, sizeof(float) * H);
    }
    // A row's final state is saved when it leaves the running prefix, or at the end.
    auto retire = [&](int from, int to, const float* hLast) {
      for (int i = from; i < to; ++i) {
        const idx sn = static_cast<idx>(state) * N + order[a + i];
        std::memcpy(call.hN + sn * Hout, hLast + i * ldh, sizeof(float) * Hout);
        if (lstm && call.cN) std::memcpy(call.cN + sn * H, &c[i * Hp], sizeof(float) * H);
      }
    };
    int cur = 0, m = nb;
    const int steps = len[order[a]];
    for (int s = 0; s < steps; ++s) {
      int active = m;
      while (active > 0 && len[order[a + active - 1]] <= s) --active;
      retire(active, m, h[cur].data());
      m = active;
      for (int i = 0; i < m; ++i) {
        const int bIdx = order[a + i];
        const int t = d == 0 ? s : len[bIdx] - 1 - s;
        prow[i] = P[d].data() + rowOf(t, bIdx) * ldP;
      }
      detail::StepArgs st;
      st.mode = cfg.mode;
      st.geo = geo;
      st.m = m;
      st.K = Hout;
      st.hPrev = h[cur].data();
      st.ldh = ldh;
      st.Whh = w.whh.data();
      st.P = prow.data();
      st.bhn = w.bhn.empty() ? nullptr : w.bhn.data();
      st.c = lstm ? c.data() : nullptr;
      st.ldc = Hp;
      st.hNext = proj ? cellOut.data() : h[1 - cur].data();
      st.ldn = proj ? Hp : ldh;
      k->step(st);
      if (proj) {
        detail::GemmArgs g;
        g.m = m;
        g.K = H;
        g.A = cellOut.data();
        g.lda = Hp;
        g.B = w.whr.data();
        g.panels = projPanels;
        g.width = projWidth;
        g.C = h[1 - cur].data();
        g.ldc = ldh;
        k->gemm(g);
      }
      cur = 1 - cur;
      for (int i = 0; i < m; ++i) {
        const int bIdx = order[a + i];
        const int t = d == 0 ? s : len[bIdx] - 1 - s;
        std::memcpy(Y + rowOf(t, bIdx) * outWidth + d * Hout, &h[cur][i * ldh], sizeof(float) * Hout);
      }
    }
    retire(0, m, h[cur].data());
  };

  auto work = [&](int tid, int count, Barrier* barrier) {
    for (int l = 0; l < L; ++l) {
      if (padded) {
        // Steps past a sequence's length stay 0; this thread's share of the rows is cleared.
        float* Y = layerOutput(l);
        const idx r0 = outSize * tid / count, r1 = outSize * (tid + 1) / count;
        std::fill(Y + r0, Y + r1, 0.0f);
      }
      for (int task = tid; task < D * projChunks; task += count) project(l, task % D, task / D);
      if (barrier && !barrier->wait()) return;
      for (int task = tid; task < D * chunks; task += count) recur(l, task % D, task / D);
      if (barrier && !barrier->wait()) return;
    }
  };

  bool parallel = false;
  if (threads > 1) {
    Barrier barrier(threads);
    std::vector<std::thread> pool;
    try {
      for (int t = 1; t < threads; ++t) pool.emplace_back(work, t, threads, &barrier);
      parallel = true;
    } catch (const std::system_error&) {
      barrier.abort();  // the threads already started return at once; run on this thread alone
    }
    if (parallel) work(0, threads, &barrier);
    for (auto& th : pool) th.join();
  }
  if (!parallel) work(0, 1, nullptr);
  if (!ownLayers) std::memcpy(call.output, call.layers + (L - 1) * outSize, sizeof(float) * outSize);
  release(std::move(ws));
}

}  // namespace birnn
