// One forward call on a built Network: the layer loop, the input projection of every time step
// as one GEMM per direction, and the recurrence over the batch rows still inside their
// sequences, shared out over the threads of the plan (thread_plan.h). The arithmetic is in the
// kernels; results never depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
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
//
// Work follows the real steps, not N x T: rows are kept in the packed order of PyTorch's
// PackedSequence. Batch entries are ranked by length, longest first; step t holds the ranks
// still running, [0, active(t)), at packed rows offset(t) .. offset(t) + active(t). The input
// projection, the recurrence and every layer's output only ever touch the sum of the lengths.
// Time-major input with no padding is already in that order and is read and written in place;
// otherwise the input is gathered once, each wanted output of a layer but the last scattered
// once, and the last layer's written by the recurrence where the caller wants it (padded steps
// are left as the caller's zeros). When the lengths differ, the backward direction's step s
// reads a different time step of each sequence: its input projection is computed in reversed
// packed order (that of the reversed sequences), so that each step still reads adjacent rows.
//
// A Pass computes the batch entries `members` (all of them, or one group of the plan, whose other
// entries other Passes compute): ranks, steps and buffers are the members'; the caller's arrays,
// and the states in them, are indexed by batch entry as always.
class Pass {
 public:
  // Sizes every buffer in `ws` before any thread starts, so that no thread allocates or throws.
  Pass(const detail::PackedNetwork& net, const Call& call, const detail::ThreadPlan& plan, Workspace& ws,
       std::vector<int> members);

  // Whether layer 0's input must first be gathered into packed order.
  bool gathers() const { return !inPlace_; }
  // Part `part` of `parts` of the input, gathered into packed order.
  void gather(int part, int parts) const;
  // Whether the backward direction reads a reversed copy of each layer's input.
  bool reverses() const { return reversed_; }
  // Part `part` of `parts` of layer l's input, copied into reversed packed order.
  void reverse(int l, int part, int parts) const;
  // Direction d's input projection (with the summed biases) of row chunk `chunk` of layer l.
  void project(int l, int d, int chunk) const;
  // Column part `part` of `parts` of direction d's recurrence of batch chunk `chunk` of layer l:
  // every step, then hN and cN. The parts of a chunk run at once, each on its own thread, and
  // meet at `barrier` (null for one part) after each step (and after each cell update, with a
  // projection); a part computes only its own panels of W_hh (and of W_hr), and writes only
  // their columns.
  void recur(int l, int d, int chunk, int part, int parts, detail::StepBarrier* barrier) const;
  // Whether layer l's output must be moved to where the caller wants it: not when it was
  // computed in place or straight into the caller's array, nor when the caller does not want it.
  bool scatters(int l) const { return wanted(l) != nullptr && wanted(l) != packedOutput(l) && !direct(l); }
  // Part `part` of `parts` of that move. Padded steps are not touched: the caller's arrays arrive
  // zero-filled (birnn.h), and their pages stay unmapped.
  void scatter(int l, int part, int parts) const;
  // Every phase above in order, on this thread alone (a plan of one thread).
  void runAlone() const;
  // When the caller asked for every layer's output, the last one is also the output.
  void finish() const;

 private:
  // Whether layer l's output is read at all: by the next layer, or by the caller (the last
  // layer's is not when the caller wants only the final states).
  bool needed(int l) const { return l < L_ - 1 || wanted(l) != nullptr; }
  // Whether the recurrence writes layer l's output straight into the caller's layout: the last
  // layer's, which no later layer reads in packed order (a scatter would copy it all once more).
  bool direct(int l) const { return l == L_ - 1 && wanted(l) != nullptr && !inPlace_; }
  // Whether layer l's packed output needs a workspace buffer (it is not the caller's array).
  bool buffered(int l) const { return needed(l) && !(inPlace_ && wanted(l)) && !direct(l); }
  // Layer l's output in packed order: the caller's own array when in place, else the workspace;
  // null when nothing reads it, or when it is written straight into the caller's layout.
  float* packedOutput(int l) const {
    return buffered(l) ? ws_.layerOut[l % 2].data() : direct(l) ? nullptr : wanted(l);
  }
  // Where the caller wants layer l's output (in the caller's layout), or null.
  float* wanted(int l) const;
  idx rowOf(int t, int b) const {  // row of (time step, batch entry) in the caller's layout
    return call_.batchFirst ? static_cast<idx>(b) * T_ + t : static_cast<idx>(t) * N_ + b;
  }
  idx packedRow(int t, int rank) const { return offset_[t] + rank; }
  // Batch chunk c of the recurrence holds the ranks c, c + chunks, c + 2 chunks, ...: with lengths
  // that differ, every chunk gets long and short sequences alike, so the chunks' work (the sum of
  // their lengths) is even, where a run of adjacent ranks gave one chunk all the longest.
  int chunkSize(int chunk) const { return (n_ - chunk + plan_.chunks - 1) / plan_.chunks; }
  int rankOf(int chunk, int i) const { return chunk + i * plan_.chunks; }
  // The chunk's rows still running at step t: a prefix of them, as ranks go longest first.
  int activeIn(int chunk, int t) const { return (active_[t] - chunk + plan_.chunks - 1) / plan_.chunks; }
  // Steps [first, second) of part `part` of `parts` of a copy phase (gather, reverse, scatter):
  // cut by packed rows, not by steps, as the steps' rows vary with the lengths (20..100 of T =
  // 100: the first half of the steps holds 5 times the rows of the second).
  std::pair<int, int> steps(int part, int parts) const;
  // The row of (t, rank) in reversed packed order: step t of a sequence is step len - 1 - t of
  // its reverse.
  idx reversedRow(int t, int rank) const { return packedRow(len_[order_[rank]] - 1 - t, rank); }

  const detail::PackedNetwork& net_;
  const Call& call_;
  const detail::ThreadPlan& plan_;
  Workspace& ws_;
  int T_, N_, L_;
  int n_;         // members
  bool lstm_, proj_;
  int Hp_;        // hidden units padded to whole panels
  idx ldP_;       // floats per row of the input projection
  int outWidth_;  // D * Hout
  idx outSize_;   // floats per layer output in the caller's layout (T * N * outWidth)
  // The hidden state feeds the next step's GEMM (K = Hout); with a projection it is written by
  // the projection GEMM in whole panels, otherwise by the cell update in whole panels of units.
  idx ldh_;
  std::vector<int> len_;
  std::vector<int> order_;     // members by rank: longest first, ties in batch order
  std::vector<int> active_;    // [T]: ranks still running at step t
  std::vector<idx> offset_;    // [T + 1]: first packed row of step t; offset_[T] = sum of lengths
  bool inPlace_;               // time-major and unpadded: packed order is the caller's layout
  bool reversed_;              // bidirectional, and the lengths differ
};

Pass::Pass(const detail::PackedNetwork& net, const Call& call, const detail::ThreadPlan& plan, Workspace& ws,
           std::vector<int> members)
    : net_(net),
      call_(call),
      plan_(plan),
      ws_(ws),
      T_(call.seqLen),
      N_(call.batch),
      L_(net.cfg.numLayers),
      n_(static_cast<int>(members.size())),
      lstm_(net.cfg.mode == Mode::Lstm),
      proj_(net.cfg.projSize > 0),
      Hp_(net.geo.paddedUnits()),
      ldP_(net.geo.paddedColumns()),
      outWidth_(net.D * net.Hout),
      outSize_(static_cast<idx>(T_) * N_ * outWidth_),
      ldh_(proj_ ? static_cast<idx>(net.projPanels) * net.projWidth : Hp_),
      len_(N_, T_),
      order_(std::move(members)),
      active_(T_, 0),
      offset_(T_ + 1, 0) {
  if (call.lengths) std::copy(call.lengths, call.lengths + N_, len_.begin());
  std::stable_sort(order_.begin(), order_.end(), [&](int a, int b) { return len_[a] > len_[b]; });
  for (int b : order_) {
    for (int t = 0; t < len_[b]; ++t) ++active_[t];
  }
  for (int t = 0; t < T_; ++t) offset_[t + 1] = offset_[t] + active_[t];
  const idx rows = offset_[T_];
  inPlace_ = !call.batchFirst && rows == static_cast<idx>(T_) * N_;
  reversed_ = net.D == 2 && len_[order_.front()] != len_[order_.back()];

  // Written in full before they are read. A buffer this call does not use gets size 0 (its
  // capacity stays): the pool reads the sizes as what the call used (WorkspacePool::release).
  const int D = net.D;
  const idx packedSize = rows * outWidth_;
  detail::resizeBuffer(ws.input, inPlace_ ? 0 : static_cast<std::size_t>(rows * net.cfg.inputSize));
  detail::resizeBuffer(ws.reversed,
                       reversed_ ? static_cast<std::size_t>(rows * std::max(net.cfg.inputSize, outWidth_)) : 0);
  ws.P.resize(D);
  for (auto& p : ws.P) detail::resizeBuffer(p, static_cast<std::size_t>(rows * ldP_));
  // Packed layer outputs in the workspace, alternating: layer l + 2 overwrites layer l only
  // after layer l + 1 (which read it) is done, and layer l was scattered alongside.
  std::size_t outSizes[2] = {0, 0};
  for (int l = 0; l < L_; ++l) {
    if (buffered(l)) outSizes[l % 2] = static_cast<std::size_t>(packedSize);
  }
  for (int i = 0; i < 2; ++i) detail::resizeBuffer(ws.layerOut[i], outSizes[i]);
  // Per (direction, chunk) recurrent state, at index chunk * D + d.
  ws.rows.resize(static_cast<std::size_t>(D) * plan.chunks);
  for (int task = 0; task < D * plan.chunks; ++task) {
    const int nb = chunkSize(task / D);
    Workspace::Rows& rs = ws.rows[task];
    for (auto& hh : rs.h) detail::resizeBuffer(hh, static_cast<std::size_t>(nb) * ldh_);
    detail::resizeBuffer(rs.c, lstm_ ? static_cast<std::size_t>(nb) * Hp_ : 0);
    detail::resizeBuffer(rs.cellOut, proj_ ? static_cast<std::size_t>(nb) * Hp_ : 0);
    rs.prow.resize(static_cast<std::size_t>(nb) * plan.columnParts);
    rs.orow.resize(static_cast<std::size_t>(nb) * plan.columnParts);
  }
}

std::pair<int, int> Pass::steps(int part, int parts) const {
  const auto firstStep = [&](int p) {
    if (p == parts) return T_;
    const idx row = offset_[T_] * p / parts;
    return static_cast<int>(std::lower_bound(offset_.begin(), offset_.begin() + T_, row) - offset_.begin());
  };
  return {firstStep(part), firstStep(part + 1)};
}

float* Pass::wanted(int l) const {
  if (call_.layers) return call_.layers + l * outSize_;
  return l == L_ - 1 ? call_.output : nullptr;
}

void Pass::gather(int part, int parts) const {
  const int I = net_.cfg.inputSize;
  const auto [first, end] = steps(part, parts);
  for (int t = first; t < end; ++t) {
    for (int rank = 0; rank < active_[t]; ++rank) {
      std::memcpy(ws_.input.data() + packedRow(t, rank) * I, call_.input + rowOf(t, order_[rank]) * I,
                  sizeof(float) * I);
    }
  }
}

void Pass::reverse(int l, int part, int parts) const {
  const float* X = l > 0 ? packedOutput(l - 1) : ws_.input.data();
  const int width = l > 0 ? outWidth_ : net_.cfg.inputSize;
  const auto [first, end] = steps(part, parts);
  for (int t = first; t < end; ++t) {
    for (int rank = 0; rank < active_[t]; ++rank) {
      std::memcpy(ws_.reversed.data() + reversedRow(t, rank) * width, X + packedRow(t, rank) * width,
                  sizeof(float) * width);
    }
  }
}

void Pass::project(int l, int d, int chunk) const {
  const PackedLayer& w = net_.layers[l * net_.D + d];
  const float* X = d == 1 && reversed_ ? ws_.reversed.data()
                   : l > 0             ? packedOutput(l - 1)
                   : inPlace_          ? call_.input
                                       : ws_.input.data();
  const idx rows = offset_[T_];
  const idx r0 = rows * chunk / plan_.projChunks, r1 = rows * (chunk + 1) / plan_.projChunks;
  detail::GemmArgs g;
  g.m = static_cast<int>(r1 - r0);
  g.K = w.in;
  g.A = X + r0 * w.in;
  g.lda = w.in;
  g.B = w.wih.data();
  g.panels = net_.geo.panels;
  g.width = net_.geo.width();
  g.lastWidth = net_.geo.tiledWidthOf(net_.geo.panels - 1);
  g.tail = detail::tailArgs(net_.geo, w.wihTail.data(), w.in);
  g.bias = w.bias.data();
  g.C = ws_.P[d].data() + r0 * ldP_;
  g.ldc = ldP_;
  if (g.m > 0) net_.k->gemm(g);
}

void Pass::recur(int l, int d, int chunk, int part, int parts, detail::StepBarrier* barrier) const {
  const PackedLayer& w = net_.layers[l * net_.D + d];
  const int D = net_.D, H = net_.H, Hout = net_.Hout;
  const int nb = chunkSize(chunk);
  auto rank = [&](int i) { return rankOf(chunk, i); };
  if (nb == 0) return;
  const int state = l * D + d;
  const float* P = ws_.P[d].data();
  float* Y = packedOutput(l);  // rows in packed order, or with `into` in the caller's layout
  float* into = direct(l) ? wanted(l) : nullptr;
  Workspace::Rows& rs = ws_.rows[static_cast<std::size_t>(chunk) * D + d];
  Floats(&h)[2] = rs.h;
  Floats& c = rs.c;
  Floats& cellOut = rs.cellOut;
  const float** prow = rs.prow.data() + static_cast<std::size_t>(part) * nb;
  float** orow = rs.orow.data() + static_cast<std::size_t>(part) * nb;
  // This part's panels of W_hh, whose hidden units (columns of c) it updates, and its columns of
  // h: those units, or with a projection its panels of W_hr.
  const int U = net_.geo.units, panels = net_.geo.panels;
  const int p0 = panels * part / parts, p1 = panels * (part + 1) / parts;
  const int u0 = p0 * U, u1 = std::min(p1 * U, Hp_);  // (a narrow last panel ends early)
  const int q0 = proj_ ? net_.projPanels * part / parts : p0;
  const int q1 = proj_ ? net_.projPanels * (part + 1) / parts : p1;
  const int hc0 = proj_ ? q0 * net_.projWidth : u0, hc1 = proj_ ? q1 * net_.projWidth : u1;
  const int hr0 = std::min(hc0, Hout), cr0 = std::min(u0, H);  // clipped to the model's columns
  const std::size_t hBytes = sizeof(float) * (std::min(hc1, Hout) - hr0);
  const std::size_t cBytes = sizeof(float) * (std::min(u1, H) - cr0);
  for (int i = 0; i < nb; ++i) {
    const idx sn = static_cast<idx>(state) * N_ + order_[rank(i)];
    float* hi = &h[0][i * ldh_];
    std::fill(hi + hc0, hi + hc1, 0.0f);
    if (call_.h0) std::memcpy(hi + hr0, call_.h0 + sn * Hout + hr0, hBytes);
    if (!lstm_) continue;
    float* ci = &c[i * Hp_];
    std::fill(ci + u0, ci + u1, 0.0f);
    if (call_.c0) std::memcpy(ci + cr0, call_.c0 + sn * H + cr0, cBytes);
  }
  // After the barrier, the next step reads every part's columns of the state; most were just
  // written by other cores. They are fetched all at once, not line by line as the GEMM walks
  // them: on the 16-core VM a line from another core takes a few hundred ns, and a W-b1 step
  // about a microsecond. Into L1 when they are few (8 KiB), else into L2, so as not to push the
  // GEMM's slices of W_hh out of L1. (The same for W_hr's input, every part's units of
  // o * tanh(c).)
  auto meet = [&](const float* read, int rows, idx ld, int width) {
    if (parts == 1) return;
    barrier->arriveAndWait(part, parts);
    constexpr int kLineFloats = 64 / sizeof(float);
    const bool few = static_cast<idx>(rows) * width <= 2048;
    for (int i = 0; i < rows; ++i) {
      for (int k = 0; k < width; k += kLineFloats) {
        if (few) {
          __builtin_prefetch(read + i * ld + k, 0, 3);
        } else {
          __builtin_prefetch(read + i * ld + k, 0, 2);
        }
      }
    }
  };
  meet(h[0].data(), nb, ldh_, Hout);  // the first step reads every part's columns of h0
  // A row's final state is saved when it leaves the running prefix, or at the end.
  auto retire = [&](int from, int to, const float* hLast) {
    for (int i = from; i < to; ++i) {
      const idx sn = static_cast<idx>(state) * N_ + order_[rank(i)];
      std::memcpy(call_.hN + sn * Hout + hr0, hLast + i * ldh_ + hr0, hBytes);
      if (lstm_ && call_.cN) std::memcpy(call_.cN + sn * H + cr0, &c[i * Hp_ + cr0], cBytes);
    }
  };
  // The packed row of the chunk's row i at step s: the forward direction reads step s, the backward
  // one step len - 1 - s of each sequence; its projections are in reversed order when reversed_.
  auto rowAt = [&](int s, int i) {
    const int t = d == 0 ? s : len_[order_[rank(i)]] - 1 - s;
    return packedRow(t, rank(i));
  };
  const bool reversedP = d == 1 && reversed_;
  // Where row i's output of step s goes: its packed row, or its row in the caller's layout.
  auto outRow = [&](int s, int i) {
    const int b = order_[rank(i)];
    return (Y ? Y + rowAt(s, i) * outWidth_ : into + rowOf(d == 0 ? s : len_[b] - 1 - s, b) * outWidth_) + d * Hout;
  };
  // The cell update writes each row's new state into the output too; with a projection, the state
  // is W_hr's product, copied there once it is made.
  const bool written = Y != nullptr || into != nullptr;
  const bool emits = written && !proj_;
  int cur = 0, m = nb;
  const int steps = len_[order_[rank(0)]];
  for (int s = 0; s < steps; ++s) {
    const int active = activeIn(chunk, s);
    retire(active, m, h[cur].data());
    m = active;
    for (int i = 0; i < m; ++i) prow[i] = P + (reversedP ? packedRow(s, rank(i)) : rowAt(s, i)) * ldP_;
    for (int i = 0; emits && i < m; ++i) orow[i] = outRow(s, i);
    detail::StepArgs st;
    st.mode = net_.cfg.mode;
    st.geo = net_.geo;
    st.panelBegin = p0;
    st.panelEnd = p1;
    st.m = m;
    st.K = Hout;
    st.hPrev = h[cur].data();
    st.ldh = ldh_;
    st.Whh = w.whh.data();
    st.tail = detail::tailArgs(net_.geo, w.whhTail.data(), Hout);
    st.P = prow;
    st.bhn = w.bhn.empty() ? nullptr : w.bhn.data();
    st.c = lstm_ ? c.data() : nullptr;
    st.ldc = Hp_;
    st.hNext = proj_ ? cellOut.data() : h[1 - cur].data();
    st.ldn = proj_ ? Hp_ : ldh_;
    st.out = emits ? orow : nullptr;
    st.outUnits = H;
    net_.k->step(st);
    if (proj_) {
      meet(cellOut.data(), m, Hp_, H);
      detail::GemmArgs g;
      g.m = m;
      g.K = H;
      g.A = cellOut.data();
      g.lda = Hp_;
      g.B = w.whr.data() + static_cast<idx>(q0) * H * net_.projWidth;
      g.panels = q1 - q0;
      g.width = g.lastWidth = net_.projWidth;
      g.C = h[1 - cur].data() + hc0;
      g.ldc = ldh_;
      if (g.panels > 0) net_.k->gemm(g);
    }
    // The next step reads every part's columns of the new state, and overwrites the old one.
    meet(h[1 - cur].data(), m, ldh_, Hout);
    cur = 1 - cur;
    for (int i = 0; written && proj_ && i < m; ++i) {
      std::memcpy(outRow(s, i) + hr0, &h[cur][i * ldh_ + hr0], hBytes);
    }
  }
  retire(0, m, h[cur].data());
}

void Pass::scatter(int l, int part, int parts) const {
  if (!scatters(l)) return;
  float* out = wanted(l);
  const float* packed = packedOutput(l);
  const std::size_t bytes = sizeof(float) * outWidth_;
  const auto [first, end] = steps(part, parts);
  for (int t = first; t < end; ++t) {
    for (int rank = 0; rank < active_[t]; ++rank) {
      float* dst = out + rowOf(t, order_[rank]) * outWidth_;
      std::memcpy(dst, packed + packedRow(t, rank) * outWidth_, bytes);
    }
  }
}

void Pass::runAlone() const {
  if (gathers()) gather(0, 1);
  for (int l = 0; l < L_; ++l) {
    if (reverses()) reverse(l, 0, 1);
    for (int d = 0; d < net_.D; ++d) project(l, d, 0);
    if (l > 0) scatter(l - 1, 0, 1);
    for (int d = 0; d < net_.D; ++d) recur(l, d, 0, 0, 1, nullptr);
  }
}

void Pass::finish() const {
  if (call_.layers == nullptr || call_.output == nullptr) return;
  std::memcpy(call_.output, call_.layers + (L_ - 1) * outSize_, sizeof(float) * outSize_);
}

// The plan's inputs: the call, the machine, and the floating-point operations of one layer
// (layer 0's input width may differ from the others': the larger counts).
detail::PlanInput planInput(const detail::PackedNetwork& net, const Call& call, idx rows, int teamLimit) {
  detail::PlanInput in;
  in.teamLimit = teamLimit;
  in.requested = call.threads;
  in.cores = detail::hardwareThreads();
  in.directions = net.D;
  in.batch = call.batch;
  in.rows = rows;
  const double perRow = 2.0 * net.geo.G * net.H * net.D;
  in.recurrenceFlops = rows * (perRow * net.Hout + 2.0 * net.cfg.projSize * net.H * net.D);
  in.layerFlops = in.recurrenceFlops + rows * perRow * std::max(net.cfg.inputSize, net.D * net.Hout);
  in.stepFlops = call.batch * (perRow * net.Hout + 2.0 * net.cfg.projSize * net.H * net.D) / net.D;
  in.panels = net.geo.panels;
  for (const PackedLayer& w : net.layers) {
    in.recurrentBytes = std::max(in.recurrentBytes, (w.whh.size() + w.whr.size()) * sizeof(float));
  }
  return in;
}

}  // namespace

void Network::Impl::run(const Call& call) const {
  idx rows = static_cast<idx>(call.seqLen) * call.batch;  // the real steps of all sequences
  if (call.lengths) rows = std::accumulate(call.lengths, call.lengths + call.batch, idx{0});
  const int teamLimit = detail::TeamGauge::shared().limit(detail::nowNs());
  const detail::ThreadPlan plan = detail::planThreads(planInput(*this, call, rows, teamLimit));
  // The calling thread's compute slot first: a call that waits for one holds no work buffers.
  const detail::WorkerPool::Lease lease = detail::WorkerPool::shared().lease();
  if (plan.groups > 1) return runGroups(call, plan, lease);
  std::vector<int> everyone(call.batch);
  std::iota(everyone.begin(), everyone.end(), 0);
  std::unique_ptr<Workspace> ws = workspaces.acquire();
  const Pass pass(*this, call, plan, *ws, std::move(everyone));
  // Phase by phase, each on the threads it can use (borrowed from the pool for that phase only):
  // the gather of the input; per layer the projections of all rows (alongside the scatter of the
  // previous layer's output, which reads the same rows), then the recurrence.
  // The threads of a phase take its chunks in turn; a recurrence's column parts each need a
  // thread of their own.
  const int projTasks = D * plan.projChunks, recurTasks = D * plan.chunks;
  const int projThreads = std::min(plan.threads, projTasks);
  std::atomic<int> nextTask{0};  // the next chunk of the input projection, or of the recurrence
  const int recurThreads = std::min(plan.threads, recurTasks * plan.columnParts);
  // What the teams cost, for the gauge: their phases' time, and how long members waited for late
  // ones. (teamParts is written by tid 0, the held worker, and read once its phase is over.)
  int teamParts = 1;
  std::int64_t teamNs = 0, lateNs = 0;
  if (pass.gathers()) lease.run(plan.threads, [&](int tid, int count) { pass.gather(tid, count); });
  for (int l = 0; l < cfg.numLayers; ++l) {
    if (pass.reverses()) lease.run(plan.threads, [&](int tid, int count) { pass.reverse(l, tid, count); });
    nextTask.store(0, std::memory_order_relaxed);  // published to the workers with their tickets
    lease.run(projThreads, [&](int tid, int count) {
      for (int task; (task = nextTask.fetch_add(1, std::memory_order_relaxed)) < projTasks;) {
        pass.project(l, task % D, task / D);
      }
      if (l > 0) pass.scatter(l - 1, tid, count);
    });
    nextTask.store(0, std::memory_order_relaxed);
    // One per recurrence task, for its column parts; fresh for each layer, whose phase may be
    // lent fewer threads, and so run fewer parts, than the last (a barrier's team never changes).
    std::deque<detail::StepBarrier> barriers;
    for (int task = 0; plan.columnParts > 1 && task < recurTasks; ++task) barriers.emplace_back(plan.columnParts);
    const std::int64_t start = plan.columnParts > 1 ? detail::nowNs() : 0;
    lease.run(recurThreads, [&](int tid, int count) {
      // Column parts need all of a chunk's parts running at once: as many as the threads lent.
      const int parts = count >= recurTasks ? std::min(plan.columnParts, count / recurTasks) : 1;
      if (tid == 0) teamParts = std::max(teamParts, parts);
      if (parts == 1) {
        // Fewer threads than chunks (lent fewer, or one preempted): each takes the next chunk.
        for (int task; (task = nextTask.fetch_add(1, std::memory_order_relaxed)) < recurTasks;) {
          pass.recur(l, task % D, task / D, 0, 1, nullptr);
        }
      } else if (tid < recurTasks * parts) {
        const int task = tid / parts;
        pass.recur(l, task % D, task / D, tid % parts, parts, &barriers[task]);
      }
    });
    if (plan.columnParts > 1) {
      teamNs += detail::nowNs() - start;
      std::int64_t longest = 0;  // the teams of one phase wait for one another at its end
      for (const detail::StepBarrier& b : barriers) longest = std::max(longest, b.longestWaitNs(plan.columnParts));
      lateNs += longest;
    }
  }
  if (teamParts > 1) detail::TeamGauge::shared().report(teamLimit, teamParts, teamNs, lateNs, detail::nowNs());
  pass.finish();
  workspaces.release(std::move(ws));
}

// Groups of sequences, each computed whole by one thread (ThreadPlan::groups): group g holds the
// ranks g, g + groups, g + 2 groups, ... of the batch by length, so that every group gets long and
// short sequences alike and the groups' work is even. Every group's buffers are made here, before
// any thread starts; the threads then take the groups in turn.
void Network::Impl::runGroups(const Call& call, const detail::ThreadPlan& plan,
                              const detail::WorkerPool::Lease& lease) const {
  std::vector<int> order(call.batch);
  std::iota(order.begin(), order.end(), 0);
  if (call.lengths) {
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return call.lengths[a] > call.lengths[b]; });
  }
  const detail::ThreadPlan alone;  // within a group: one thread, one chunk, one part
  std::vector<std::unique_ptr<Workspace>> spaces;
  std::deque<Pass> passes;
  for (int g = 0; g < plan.groups; ++g) {
    std::vector<int> members;
    for (int rank = g; rank < call.batch; rank += plan.groups) members.push_back(order[rank]);
    spaces.push_back(workspaces.acquire());
    passes.emplace_back(*this, call, alone, *spaces.back(), std::move(members));
  }
  std::atomic<int> next{0};
  lease.run(plan.threads, [&](int, int) {
    for (int g; (g = next.fetch_add(1, std::memory_order_relaxed)) < plan.groups;) passes[g].runAlone();
  });
  passes.front().finish();
  for (auto& ws : spaces) workspaces.release(std::move(ws));
}

}  // namespace birnn
