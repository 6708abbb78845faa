// One forward call on a built Network: the layer loop, the input projection of every time step
// as one GEMM per direction, the recurrence over the batch rows still inside their sequences,
// and the zeroing of padded output steps, shared out over the threads of the plan
// (thread_plan.h). The arithmetic is in the kernels; results never depend on the thread count.
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <utility>
#include <vector>

#include "birnn.h"
#include "kernels/kernel.h"
#include "network_impl.h"
#include "thread_plan.h"
#include "workspace.h"

namespace birnn {

namespace {

using detail::Floats;
using detail::Workspace;
using idx = std::ptrdiff_t;

// One call's sizes, batch order and buffers. Its steps are the units the threads share out:
// each writes its own rows, so any number of them may run at once within a phase.
class Pass {
 public:
  // Sizes every buffer in `ws` before any thread starts, so that no thread allocates or throws.
  Pass(const detail::PackedNetwork& net, const Call& call, const detail::ThreadPlan& plan, Workspace& ws);

  // Whether some sequence is shorter than seqLen: then its output steps past the end stay 0.
  bool padded() const { return padded_; }
  // Part `part` of `parts` of layer l's output set to 0 (the recurrence fills the real steps).
  void clearPadded(int l, int part, int parts) const;
  // Direction d's input projection (with the summed biases) of row chunk `chunk` of layer l.
  void project(int l, int d, int chunk) const;
  // Direction d's recurrence of batch chunk `chunk` of layer l: every step, then hN and cN.
  void recur(int l, int d, int chunk) const;
  // When the caller asked for every layer's output, the last one is also the output.
  void finish() const;

 private:
  float* layerOutput(int l) const;
  idx rowOf(int t, int b) const {  // row of (time step, batch entry) in the input/output layout
    return call_.batchFirst ? static_cast<idx>(b) * T_ + t : static_cast<idx>(t) * N_ + b;
  }

  const detail::PackedNetwork& net_;
  const Call& call_;
  const detail::ThreadPlan& plan_;
  Workspace& ws_;
  int T_, N_;
  bool lstm_, proj_;
  int Hp_;        // hidden units padded to whole panels
  idx rows_;      // T * N
  idx ldP_;       // floats per row of the input projection
  int outWidth_;  // D * Hout
  idx outSize_;   // floats per layer output
  // The hidden state feeds the next step's GEMM (K = Hout); with a projection it is written by
  // the projection GEMM in whole panels, otherwise by the cell update in whole panels of units.
  idx ldh_;
  bool ownLayers_;  // the caller wants no layer outputs: they live in the workspace
  std::vector<int> len_;
  bool padded_;
  // Batch rows sorted by length, longest first: at step s the rows still running are a prefix.
  std::vector<int> order_;
};

Pass::Pass(const detail::PackedNetwork& net, const Call& call, const detail::ThreadPlan& plan, Workspace& ws)
    : net_(net),
      call_(call),
      plan_(plan),
      ws_(ws),
      T_(call.seqLen),
      N_(call.batch),
      lstm_(net.cfg.mode == Mode::Lstm),
      proj_(net.cfg.projSize > 0),
      Hp_(net.geo.paddedUnits()),
      rows_(static_cast<idx>(T_) * N_),
      ldP_(net.geo.paddedColumns()),
      outWidth_(net.D * net.Hout),
      outSize_(rows_ * outWidth_),
      ldh_(proj_ ? static_cast<idx>(net.projPanels) * net.projWidth : Hp_),
      ownLayers_(call.layers == nullptr),
      len_(N_, T_) {
  if (call.lengths) std::copy(call.lengths, call.lengths + N_, len_.begin());
  padded_ = std::any_of(len_.begin(), len_.end(), [&](int v) { return v < T_; });
  order_.resize(N_);
  std::iota(order_.begin(), order_.end(), 0);
  std::stable_sort(order_.begin(), order_.end(), [&](int a, int b) { return len_[a] > len_[b]; });

  // Written in full before they are read (padded steps of the layer outputs are cleared).
  const int L = net.cfg.numLayers, D = net.D;
  ws.P.resize(D);
  for (auto& p : ws.P) p.resize(static_cast<std::size_t>(rows_ * ldP_));
  if (ownLayers_ && L > 1) ws.layerOut[0].resize(static_cast<std::size_t>(outSize_));
  if (ownLayers_ && L > 2) ws.layerOut[1].resize(static_cast<std::size_t>(outSize_));
  // Per (direction, chunk) recurrent state, at index chunk * D + d.
  ws.rows.resize(static_cast<std::size_t>(D) * plan.chunks);
  for (int task = 0; task < D * plan.chunks; ++task) {
    const int chunk = task / D, nb = N_ * (chunk + 1) / plan.chunks - N_ * chunk / plan.chunks;
    Workspace::Rows& rs = ws.rows[task];
    for (auto& hh : rs.h) hh.resize(static_cast<std::size_t>(nb) * ldh_);
    rs.c.resize(lstm_ ? static_cast<std::size_t>(nb) * Hp_ : 0);
    rs.cellOut.resize(proj_ ? static_cast<std::size_t>(nb) * Hp_ : 0);
    rs.prow.resize(nb);
  }
}

float* Pass::layerOutput(int l) const {
  if (!ownLayers_) return call_.layers + l * outSize_;
  return l == net_.cfg.numLayers - 1 ? call_.output : ws_.layerOut[l % 2].data();
}

void Pass::clearPadded(int l, int part, int parts) const {
  float* Y = layerOutput(l);
  const idx r0 = outSize_ * part / parts, r1 = outSize_ * (part + 1) / parts;
  std::fill(Y + r0, Y + r1, 0.0f);
}

void Pass::project(int l, int d, int chunk) const {
  const PackedLayer& w = net_.layers[l * net_.D + d];
  const float* X = l == 0 ? call_.input : layerOutput(l - 1);
  const idx r0 = rows_ * chunk / plan_.projChunks, r1 = rows_ * (chunk + 1) / plan_.projChunks;
  detail::GemmArgs g;
  g.m = static_cast<int>(r1 - r0);
  g.K = w.in;
  g.A = X + r0 * w.in;
  g.lda = w.in;
  g.B = w.wih.data();
  g.panels = net_.geo.panels;
  g.width = net_.geo.width();
  g.bias = w.bias.data();
  g.C = ws_.P[d].data() + r0 * ldP_;
  g.ldc = ldP_;
  if (g.m > 0) net_.k->gemm(g);
}

void Pass::recur(int l, int d, int chunk) const {
  const PackedLayer& w = net_.layers[l * net_.D + d];
  const int D = net_.D, H = net_.H, Hout = net_.Hout;
  const int a = N_ * chunk / plan_.chunks, b = N_ * (chunk + 1) / plan_.chunks, nb = b - a;
  if (nb == 0) return;
  const int state = l * D + d;
  const float* P = ws_.P[d].data();
  float* Y = layerOutput(l);
  Workspace::Rows& rs = ws_.rows[static_cast<std::size_t>(chunk) * D + d];
  Floats(&h)[2] = rs.h;
  Floats& c = rs.c;
  Floats& cellOut = rs.cellOut;
  std::vector<const float*>& prow = rs.prow;
  std::fill(h[0].begin(), h[0].end(), 0.0f);
  std::fill(c.begin(), c.end(), 0.0f);
  for (int i = 0; i < nb; ++i) {
    const idx sn = static_cast<idx>(state) * N_ + order_[a + i];
    if (call_.h0) std::memcpy(&h[0][i * ldh_], call_.h0 + sn * Hout, sizeof(float) * Hout);
    if (call_.c0) std::memcpy(&c[i * Hp_], call_.c0 + sn * H, sizeof(float) * H);
  }
  // A row's final state is saved when it leaves the running prefix, or at the end.
  auto retire = [&](int from, int to, const float* hLast) {
    for (int i = from; i < to; ++i) {
      const idx sn = static_cast<idx>(state) * N_ + order_[a + i];
      std::memcpy(call_.hN + sn * Hout, hLast + i * ldh_, sizeof(float) * Hout);
      if (lstm_ && call_.cN) std::memcpy(call_.cN + sn * H, &c[i * Hp_], sizeof(float) * H);
    }
  };
  int cur = 0, m = nb;
  const int steps = len_[order_[a]];
  for (int s = 0; s < steps; ++s) {
    int active = m;
    while (active > 0 && len_[order_[a + active - 1]] <= s) --active;
    retire(active, m, h[cur].data());
    m = active;
    for (int i = 0; i < m; ++i) {
      const int bIdx = order_[a + i];
      const int t = d == 0 ? s : len_[bIdx] - 1 - s;
      prow[i] = P + rowOf(t, bIdx) * ldP_;
    }
    detail::StepArgs st;
    st.mode = net_.cfg.mode;
    st.geo = net_.geo;
    st.m = m;
    st.K = Hout;
    st.hPrev = h[cur].data();
    st.ldh = ldh_;
    st.Whh = w.whh.data();
    st.P = prow.data();
    st.bhn = w.bhn.empty() ? nullptr : w.bhn.data();
    st.c = lstm_ ? c.data() : nullptr;
    st.ldc = Hp_;
    st.hNext = proj_ ? cellOut.data() : h[1 - cur].data();
    st.ldn = proj_ ? Hp_ : ldh_;
    net_.k->step(st);
    if (proj_) {
      detail::GemmArgs g;
      g.m = m;
      g.K = H;
      g.A = cellOut.data();
      g.lda = Hp_;
      g.B = w.whr.data();
      g.panels = net_.projPanels;
      g.width = net_.projWidth;
      g.C = h[1 - cur].data();
      g.ldc = ldh_;
      net_.k->gemm(g);
    }
    cur = 1 - cur;
    for (int i = 0; i < m; ++i) {
      const int bIdx = order_[a + i];
      const int t = d == 0 ? s : len_[bIdx] - 1 - s;
      std::memcpy(Y + rowOf(t, bIdx) * outWidth_ + d * Hout, &h[cur][i * ldh_], sizeof(float) * Hout);
    }
  }
  retire(0, m, h[cur].data());
}

void Pass::finish() const {
  if (ownLayers_) return;
  std::memcpy(call_.output, call_.layers + (net_.cfg.numLayers - 1) * outSize_, sizeof(float) * outSize_);
}

// Floating-point operations of one layer (input projection and recurrence, every direction),
// for the thread plan. Layer 0's input width may differ from the others': the larger counts.
double layerFlops(const detail::PackedNetwork& net, idx rows) {
  return 2.0 * rows * net.geo.G * net.H * (std::max(net.cfg.inputSize, net.D * net.Hout) + net.Hout) * net.D;
}

}  // namespace

void Network::Impl::run(const Call& call) const {
  const idx rows = static_cast<idx>(call.seqLen) * call.batch;
  const detail::ThreadPlan plan = detail::planThreads(call.threads, D, call.batch, rows, layerFlops(*this, rows));
  std::unique_ptr<Workspace> ws = workspaces.acquire();
  const Pass pass(*this, call, plan, *ws);
  // Per layer two phases, a barrier after each: the projections of all rows, then the recurrence.
  detail::runThreads(plan.threads, [&](int tid, int count, detail::Barrier* barrier) {
    for (int l = 0; l < cfg.numLayers; ++l) {
      if (pass.padded()) pass.clearPadded(l, tid, count);
      for (int task = tid; task < D * plan.projChunks; task += count) pass.project(l, task % D, task / D);
      if (barrier && !barrier->wait()) return;
      for (int task = tid; task < D * plan.chunks; task += count) pass.recur(l, task % D, task / D);
      if (barrier && !barrier->wait()) return;
    }
  });
  pass.finish();
  workspaces.release(std::move(ws));
}

}  // namespace birnn
