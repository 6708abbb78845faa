// The checks of `birnn_kernel_test plan` and `memory` (kernel_test.cc has main): the thread
// plan's choices, the panel geometry, the step barrier, the pool's posted tasks, and
// allocateFloats' reuse of freed memory. None of them computes a forward pass.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "birnn.h"
#include "kernels/kernel.h"
#include "test_support.h"
#include "thread_plan.h"

namespace birnn::checks {

// Panel geometry (kernel.h): a single-gate cell's last panel is one vector wide when its units fit
// one; every other panel, and every panel of a multi-gate cell, is full. Where the last panel is
// one vector a gate and H % lanes is at most the kernel's tail units, it is a tail, left out of
// the packed panels. A single-gate cell's panels are three vectors where that tiles fewer columns.
void geometry() {
  struct Case {
    Mode mode;
    int hidden, lanes, tailUnits, panels, lastUnits, columns, tail, lastTiled;
  };
  const Case cases[] = {
      {Mode::RnnTanh, 50, 8, 0, 4, 8, 56, 0, 8},     // the seed's RNN on AVX2 without tails: 3 x 16 + 8
      {Mode::RnnTanh, 50, 8, 2, 4, 8, 56, 2, 0},     // ... with them: the narrow last panel is all tail
      {Mode::RnnTanh, 50, 16, 4, 2, 16, 64, 2, 0},   // AVX-512: 48 units in a panel of three, a tail of 2
      {Mode::RnnTanh, 50, 16, 0, 2, 32, 64, 0, 32},  // ... without tails, two panels of two vectors
      {Mode::RnnRelu, 26, 8, 2, 2, 8, 32, 2, 0},     // AVX2: 24 + a tail of 2, where panels of two tiled 32
      {Mode::RnnTanh, 256, 16, 4, 8, 32, 256, 0, 32},  // as many columns either way: panels of two
      {Mode::RnnTanh, 33, 16, 4, 2, 16, 48, 1, 0},   // ... one: a tail of one unit
      {Mode::RnnRelu, 57, 8, 2, 4, 16, 64, 0, 16},   // 9 units left: a full last panel
      {Mode::RnnTanh, 48, 8, 2, 3, 16, 48, 0, 16},   // no remainder
      {Mode::RnnTanh, 7, 16, 4, 1, 16, 16, 0, 16},   // AVX-512: the only panel is the narrow one
      {Mode::Gru, 50, 8, 0, 7, 8, 168, 0, 24},       // one vector per gate already
      {Mode::Lstm, 50, 8, 2, 7, 8, 224, 2, 0},
      {Mode::Lstm, 50, 16, 4, 4, 16, 256, 2, 0},     // every gate's last vector a tail
      {Mode::Gru, 1, 16, 4, 1, 16, 48, 1, 0},        // the whole model a tail
  };
  for (const Case& c : cases) {
    const detail::PanelGeometry g = detail::geometryFor(c.mode, c.hidden, c.lanes, c.tailUnits);
    char name[200], got[140];
    std::snprintf(name, sizeof name,
                  "geometry: %s H %d, %d lanes, tails of %d: %d panels, the last of %d units (%d columns tiled), "
                  "%d columns, a tail of %d",
                  spec::name(c.mode), c.hidden, c.lanes, c.tailUnits, c.panels, c.lastUnits, c.lastTiled, c.columns,
                  c.tail);
    std::snprintf(got, sizeof got, "got %d panels, the last of %d units (%d tiled), %d columns, a tail of %d",
                  g.panels, g.lastUnits, g.tiledWidthOf(g.panels - 1), g.paddedColumns(), g.tail);
    report(g.panels == c.panels && g.lastUnits == c.lastUnits && g.paddedColumns() == c.columns &&
               g.tail == c.tail && g.tiledWidthOf(g.panels - 1) == c.lastTiled,
           name, got);
  }
}

// The cost model's choices for given sizes and machines, without timing (thread_plan.h).
void plans() {
  using detail::PlanInput;
  using detail::planThreads;
  // The workloads: bidirectional, 2 layers, I128 H256 T100.
  auto lstm = [](int batch, int requested, int cores) {
    PlanInput in;
    in.requested = requested;
    in.cores = cores;
    in.directions = 2;
    in.batch = batch;
    in.rows = 100L * batch;
    in.recurrenceFlops = in.rows * 2.0 * 4 * 256 * 256 * 2;
    in.layerFlops = in.recurrenceFlops + in.rows * 2.0 * 4 * 256 * 512 * 2;
    in.stepFlops = batch * 2.0 * 4 * 256 * 256;
    in.panels = 16;  // AVX-512: 16 units a panel
    in.recurrentBytes = std::size_t(256) * 1024 * sizeof(float);  // W_hh: 1 MB a direction
    return in;
  };
  auto check = [](bool ok, const std::string& name, const detail::ThreadPlan& p) {
    report(ok, "plan: " + name,
           "threads " + std::to_string(p.threads) + ", chunks " + std::to_string(p.chunks) + ", columnParts " +
               std::to_string(p.columnParts) + ", projChunks " + std::to_string(p.projChunks) + ", groups " +
               std::to_string(p.groups));
  };
  const auto b64 = planThreads(lstm(64, 16, 16));
  check(b64.threads == 16 && b64.chunks == 8 && b64.columnParts == 1 && b64.projChunks == 32,
        "W-b64 on 16 cores uses them all, by batch chunks (no barrier per step)", b64);
  const auto b64two = planThreads(lstm(64, 2, 2));
  check(b64two.threads == 2 && b64two.chunks == 1, "W-b64 on 2 cores: one thread per direction", b64two);
  const auto b1 = planThreads(lstm(1, 16, 16));
  check(b1.chunks == 1 && b1.columnParts == 6 && b1.threads == 12,
        "W-b1 on 16 cores: one chunk per direction, its steps shared by column parts on 12 threads (a quarter of "
        "the cores left to the rest)",
        b1);
  PlanInput rnn = lstm(1, 16, 16);  // W-b1's RNN: a quarter of the LSTM's work a step
  rnn.recurrenceFlops /= 4;
  rnn.layerFlops = rnn.recurrenceFlops + rnn.rows * 2.0 * 256 * 512 * 2;
  rnn.stepFlops /= 4;
  rnn.panels = 8;  // AVX-512: 32 units a panel
  const auto b1rnn = planThreads(rnn);
  check(b1rnn.chunks == 1 && b1rnn.columnParts == 4,
        "W-b1 RNN on 16 cores: 4 column parts a direction (6 would split its 8 panels no finer)", b1rnn);
  rnn.panels = 16;  // AVX2: 16 units a panel; 6 parts of 2 or 3 panels, where 5 would be 4 wide
  const auto b1rnn16 = planThreads(rnn);
  check(b1rnn16.columnParts == 6 && b1rnn16.threads == 12, "16 panels on 16 cores: 6 column parts", b1rnn16);
  // One sequence of a unidirectional LSTM, I32, T500: H80's steps (51 kFLOP) stay on one thread,
  // with no barrier, on 2 cores and on 16; H100's (80 kFLOP) are shared, 2 parts on 2 cores.
  auto uni = [](int H, int cores) {
    PlanInput in;
    in.requested = cores;
    in.cores = cores;
    in.rows = 500;
    in.stepFlops = 2.0 * 4 * H * H;
    in.recurrenceFlops = in.rows * in.stepFlops;
    in.layerFlops = in.recurrenceFlops + in.rows * 2.0 * 4 * H * 32;
    in.panels = (H + 15) / 16;
    in.recurrentBytes = std::size_t(4) * H * H * sizeof(float);
    return in;
  };
  for (int cores : {2, 16}) {
    const auto h80 = planThreads(uni(80, cores));
    check(h80.columnParts == 1, "steps under 80 kFLOP are not shared by column parts, " + std::to_string(cores) +
                                    " cores", h80);
  }
  const auto h100 = planThreads(uni(100, 2));
  check(h100.columnParts == 2 && h100.threads == 2, "80 kFLOP steps on 2 cores: 2 column parts", h100);
  const auto b1two = planThreads(lstm(1, 16, 2));
  check(b1two.threads == 2 && b1two.columnParts == 1, "W-b1 on 2 cores: one thread per direction", b1two);
  const auto capped = planThreads(lstm(64, 4096, 2));
  check(capped.threads == 2, "threads: 4096 on 2 cores runs 2", capped);
  PlanInput seed = lstm(1, 16, 16);  // the seed's RNN(25, 50, 4, bi) on one sequence of 5 steps
  seed.rows = 5;
  seed.recurrenceFlops = 5 * 2.0 * 50 * 50 * 2;
  seed.layerFlops = seed.recurrenceFlops + 5 * 2.0 * 50 * 100 * 2;
  seed.stepFlops = 2.0 * 50 * 50;
  seed.panels = 2;
  const auto tiny = planThreads(seed);
  check(tiny.threads == 1, "a tiny call runs on its own thread", tiny);
  PlanInput smallStep = seed;  // many steps of a small model: each too small to share
  smallStep.rows = 5000;
  smallStep.recurrenceFlops *= 1000;
  smallStep.layerFlops *= 1000;
  const auto small = planThreads(smallStep);
  check(small.columnParts == 1, "steps of 5,000 flops are not shared by column parts", small);
  // Many sequences of the seed's RNN (W_hh: 13 KB a direction): groups of sequences, each whole
  // on one thread; a model whose W_hh is beyond L2 shares out its batch by phases instead.
  auto seedBatch = [&](int batch, int requested, int cores) {
    PlanInput in = smallStep;
    in.requested = requested;
    in.cores = cores;
    in.batch = batch;
    in.rows = 60L * batch;
    in.recurrenceFlops = in.rows * 2.0 * 50 * 50 * 2;
    in.layerFlops = in.recurrenceFlops + in.rows * 2.0 * 50 * 100 * 2;
    in.stepFlops = batch * 2.0 * 50 * 50;
    in.recurrentBytes = std::size_t(50) * 64 * sizeof(float);
    return in;
  };
  const auto seed64two = planThreads(seedBatch(64, 2, 2));
  check(seed64two.threads == 2 && seed64two.groups == 4, "seed RNN, batch 64, 2 cores: 4 groups of 16", seed64two);
  const auto seed64one = planThreads(seedBatch(64, 1, 16));
  check(seed64one.threads == 1 && seed64one.groups == 4, "seed RNN, batch 64, 1 thread: 4 groups of 16 (cache)",
        seed64one);
  const auto seed64many = planThreads(seedBatch(64, 16, 16));
  check(seed64many.threads == 8 && seed64many.groups == 8, "seed RNN, batch 64, 16 cores: 8 groups of 8",
        seed64many);
  const auto seed20two = planThreads(seedBatch(20, 2, 2));
  check(seed20two.threads == 2 && seed20two.groups == 2, "seed RNN, batch 20, 2 cores: 2 groups of 10", seed20two);
  const auto seed256two = planThreads(seedBatch(256, 2, 2));
  check(seed256two.threads == 2 && seed256two.groups == 4,
        "seed RNN, batch 256, 2 cores: 4 groups, as many as the model keeps workspaces", seed256two);
  const auto seed256many = planThreads(seedBatch(256, 16, 16));
  check(seed256many.threads == 16 && seed256many.groups == 16, "seed RNN, batch 256, 16 cores: 16 groups of 16",
        seed256many);
  const auto seed12 = planThreads(seedBatch(12, 2, 2));
  check(seed12.groups == 1, "seed RNN, batch 12: too few sequences for groups of 8", seed12);
  const auto seed16one = planThreads(seedBatch(16, 1, 2));
  check(seed16one.groups == 1, "seed RNN, batch 16, 1 thread: one group is the whole call", seed16one);
  check(b64.groups == 1 && b64two.groups == 1, "W-b64 (W_hh 1 MB a direction): no groups", b64two);
  // W-b64's RNN (W_hh 256 KiB a direction): 4 groups of 16 on 2 threads, where they take every
  // thread; on 16, where 8 groups of 8 would leave half the threads idle, batch chunks on all.
  auto rnnB64 = [&](int requested) {
    PlanInput in = lstm(64, requested, 16);
    in.recurrenceFlops /= 4;  // one gate where the LSTM has four
    in.layerFlops /= 4;
    in.stepFlops /= 4;
    in.panels = 8;
    in.recurrentBytes = std::size_t(256) * 256 * sizeof(float);
    return in;
  };
  const auto rnnTwo = planThreads(rnnB64(2));
  check(rnnTwo.threads == 2 && rnnTwo.groups > 1, "W-b64 RNN, 2 threads: groups, one a thread at least", rnnTwo);
  const auto rnnMany = planThreads(rnnB64(16));
  check(rnnMany.threads == 16 && rnnMany.groups == 1 && rnnMany.chunks == 8,
        "W-b64 RNN, 16 threads: 8 batch chunks a direction, not 8 groups", rnnMany);
  // A container's CPU quota (cgroup v2 cpu.max) bounds the pool.
  const bool quotas = detail::cpusOfQuota("200000 100000") == 2 && detail::cpusOfQuota("150000 100000") == 2 &&
                      detail::cpusOfQuota("50000 100000") == 1 && detail::cpusOfQuota("max 100000") == 0 &&
                      detail::cpusOfQuota("") == 0 && detail::cpusOfQuota("0 100000") == 0;
  report(quotas, "plan: cpu.max quotas read as CPUs (2, 1.5 -> 2, 0.5 -> 1; max and junk: none)", "wrong");
  bool monotone = true;
  for (int batch : {1, 4, 16, 64, 256}) {
    int previous = 0;
    for (int requested = 1; requested <= 32; ++requested) {
      const int threads = planThreads(lstm(batch, requested, 16)).threads;
      monotone = monotone && threads >= previous && threads <= requested && threads <= 16;
      previous = threads;
    }
  }
  report(monotone, "plan: more threads allowed never means fewer used, nor more than allowed or than the cores",
         "not monotone");
  PlanInput limited = lstm(1, 16, 16);
  limited.teamLimit = 2;
  const auto capped2 = planThreads(limited);
  check(capped2.columnParts == 2, "W-b1 on 16 cores with the teams limited to 2: 2 column parts", capped2);
  limited.teamLimit = 1;
  const auto alone = planThreads(limited);
  check(alone.columnParts == 1 && alone.chunks == 1, "W-b1 with no teams allowed: one thread a direction", alone);
  gauge();
}

// TeamGauge: two calls in a row whose teams wait a quarter of their time for late members halve
// the limit; a try at twice the limit comes after a wait that doubles with each try that stalls,
// one try at a time, and a try that goes well raises the limit, up to none.
void gauge() {
  constexpr std::int64_t ms = 1'000'000;
  constexpr int none = detail::TeamGauge::kNoLimit;
  detail::TeamGauge g;
  bool ok = g.limit(0) == none;
  g.report(none, 6, 100 * ms, 20 * ms, 0);  // a fifth of the time: not a stall
  ok = ok && g.limit(1 * ms) == none;
  report(ok, "plan: gauge: no limit until a team stalls", "limited");
  g.report(none, 6, 100 * ms, 30 * ms, 0);  // one stall: maybe a hiccup
  g.report(none, 6, 100 * ms, 0, 0);        // the next call went well
  g.report(none, 6, 100 * ms, 30 * ms, 0);
  report(g.limit(1 * ms) == none, "plan: gauge: a stall between calls that went well changes nothing", "limited");
  g.report(none, 6, 100 * ms, 30 * ms, 0);  // a second in a row
  ok = g.limit(1 * ms) == 3 && g.limit(9 * ms) == 3;
  ok = ok && g.limit(10 * ms) == 6 && g.limit(10 * ms) == 3;  // one try, then the limit again
  report(ok, "plan: gauge: a stall halves the limit; a try at twice it after 10 ms, one at a time", "wrong");
  g.report(6, 6, 10 * ms, 9 * ms, 12 * ms);  // the try stalls: 20 ms to the next
  ok = g.limit(31 * ms) == 3 && g.limit(32 * ms) == 6;
  g.report(6, 6, 10 * ms, 9 * ms, 32 * ms);  // and again: 40 ms
  ok = ok && g.limit(71 * ms) == 3 && g.limit(72 * ms) == 6;
  report(ok, "plan: gauge: each try that stalls doubles the wait for the next", "wrong");
  g.report(none, 12, 10 * ms, 0, 73 * ms);  // a call planned before the first stall went well:
  ok = g.limit(74 * ms) == 3;               // not a try, nothing lifted
  report(ok, "plan: gauge: only a try's own report lifts the limit", "lifted");
  g.report(6, 2, 10 * ms, 9 * ms, 80 * ms);  // the try, of 2 parts, stalls: the limit is 1, no team
  ok = g.limit(81 * ms) == 1;
  for (int i = 0; i < 40; ++i) g.report(1, 1, 10 * ms, 10 * ms, 82 * ms);
  ok = ok && g.limit(83 * ms) == 1;
  report(ok, "plan: gauge: the limit goes down to one part, no further", "wrong");
  // Tries that go well: 2, then 4, ... until the limit passes the machine's threads.
  std::int64_t now = 90 * ms + 7'000 * ms;  // past the longest wait
  int tries = 0;
  for (int allowed; (allowed = g.limit(now)) != none && tries < 40; now += 7'000 * ms, ++tries) {
    g.report(allowed, allowed, 10 * ms, 0, now);
  }
  report(tries > 0 && tries <= 12 && g.limit(now) == none, "plan: gauge: tries that go well lift the limit",
         std::to_string(tries) + " tries");
  g.report(none, 8, 10 * ms, 9 * ms, now);
  g.reset();
  report(g.limit(now) == none, "plan: gauge: reset forgets the stalls", "limited");
}

// StepBarrier: no thread leaves round r before every thread has arrived in it, so what each wrote
// before arriving is what the others read after; with one thread late by far more than the spin
// budget (the others go to sleep and must be woken), and with a fresh barrier for a phase of
// fewer threads than the one before (as forward.cc makes one per layer).
void barrier() {
  auto run = [](detail::StepBarrier& b, int count, int rounds, int lateEvery) {
    std::vector<long> written(count, -1);
    std::atomic<bool> ok{true};
    std::vector<std::thread> threads;
    for (int t = 0; t < count; ++t) {
      threads.emplace_back([&, t] {
        for (long r = 0; r < rounds; ++r) {
          if (lateEvery && t == count - 1 && r % lateEvery == lateEvery - 1) {
            std::this_thread::sleep_for(std::chrono::milliseconds(3));
          }
          written[t] = r;
          b.arriveAndWait(t, count);
          for (int o = 0; o < count; ++o) {
            if (written[o] != r) ok = false;
          }
          b.arriveAndWait(t, count);  // nobody writes round r + 1 before everybody has read round r
        }
      });
    }
    for (auto& thread : threads) thread.join();
    return ok.load();
  };
  {
    detail::StepBarrier b(3);
    report(run(b, 3, 3000, 0), "plan: a step barrier of 3 threads, 3,000 rounds", "a thread left a round early");
  }
  {
    detail::StepBarrier b(3);
    report(run(b, 3, 40, 10), "plan: a step barrier whose sleepers are woken by a late thread", "a thread left early");
  }
  {
    // What the gauge reads: the waits past the pause-spin, its first round's left out.
    detail::StepBarrier late(3), lateFirst(3);
    const bool ran = run(late, 3, 40, 10);
    const std::int64_t waited = late.longestWaitNs(3);
    report(ran && waited >= 4 * 2'000'000, "plan: a step barrier's waits for a late thread are timed",
           std::to_string(waited) + " ns");
    std::vector<std::thread> starting;
    for (int t = 0; t < 3; ++t) {
      starting.emplace_back([&, t] {
        if (t == 2) std::this_thread::sleep_for(std::chrono::milliseconds(3));
        lateFirst.arriveAndWait(t, 3);
      });
    }
    for (auto& thread : starting) thread.join();
    report(lateFirst.longestWaitNs(3) == 0,
           "plan: a step barrier's first round, which waits for the threads to start, is not counted", "counted");
  }
  {
    detail::StepBarrier wide(7), narrow(7);  // as forward.cc: slots for the plan's parts, fewer lent
    const bool ok = run(wide, 7, 300, 0) && run(narrow, 2, 300, 0);
    report(ok, "plan: step barriers of 7, then 2 of 7 threads", "a thread left a round early");
  }
}

// post and withdraw: tasks start only on a free slot; withdraw takes back its owner's tasks that
// have not started, leaves other owners' alone, and returns only once its owner's running tasks
// have ended.
// A thread that calls in (forwardSync) computes a phase's first part itself, on the slot its lease
// holds, and its other parts on idle workers it borrows (main() sizes the pool to 8).
void leasing() {
  const detail::WorkerPool::Lease lease = detail::WorkerPool::shared().lease();
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id alone, first, second;
  int count = 0;
  lease.run(1, [&](int, int) { alone = std::this_thread::get_id(); });
  lease.run(2, [&](int tid, int n) {
    (tid == 0 ? first : second) = std::this_thread::get_id();
    if (tid == 0) count = n;
  });
  report(alone == caller && first == caller && count == 2 && second != caller,
         "plan: a thread that calls in computes a phase's first part itself, the others on workers",
         alone != caller || first != caller ? "part 0 ran on another thread" : "no worker ran part 1");
}

void posting() {
  const int slots = computeThreads();
  std::atomic<bool> open{false};
  std::atomic<int> started{0}, ranA{0}, runningA{0}, ranB{0};
  const char ownerA = 0, ownerB = 0, ownerC = 0;
  for (int i = 0; i < slots; ++i) {
    post(&ownerC, std::make_unique<Posted>([&] {
           ++started;
           while (!open.load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
         }));
  }
  while (started.load() < slots) std::this_thread::yield();
  auto a = [&] {
    return std::make_unique<Posted>([&] {
      ++runningA;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ++ranA;
      --runningA;
    });
  };
  for (int i = 0; i < 3; ++i) post(&ownerA, a());
  post(&ownerB, std::make_unique<Posted>([&] { ++ranB; }));
  const std::size_t taken = withdraw(&ownerA).size();
  report(taken == 3 && ranA.load() == 0, "plan: withdraw takes back the tasks that have not started",
         std::to_string(taken) + " taken, " + std::to_string(ranA.load()) + " ran");
  for (int i = 0; i < 2; ++i) post(&ownerA, a());
  open = true;
  while (ranA.load() == 0) std::this_thread::yield();
  const std::size_t late = withdraw(&ownerA).size();
  report(runningA.load() == 0 && ranA.load() + late == 2,
         "plan: withdraw returns once its owner's running tasks have ended",
         format("%.0f still running", static_cast<double>(runningA.load())));
  withdraw(&ownerB);
  withdraw(&ownerC);
  report(ranB.load() == 1, "plan: withdraw leaves other owners' tasks to run", "another owner's task was dropped");

  // A thread waiting for a slot in lease() (a forwardSync call) goes before the posted tasks.
  std::vector<std::atomic<bool>> gates(slots);
  started = 0;
  for (int i = 0; i < slots; ++i) {
    post(&ownerC, std::make_unique<Posted>([&, i] {
           ++started;
           while (!gates[i].load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
         }));
  }
  while (started.load() < slots) std::this_thread::yield();
  std::atomic<bool> leased{false}, release{false}, queuedRan{false};
  post(&ownerA, std::make_unique<Posted>([&] { queuedRan = true; }));
  std::thread sync([&] {
    const detail::WorkerPool::Lease lease = detail::WorkerPool::shared().lease();
    leased = true;
    while (!release.load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the task queued, the thread waiting
  gates[0] = true;                                              // one slot comes free
  while (!leased.load()) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const bool first = !queuedRan.load();
  release = true;
  sync.join();
  while (!queuedRan.load()) std::this_thread::yield();  // and the task takes the slot after it
  for (auto& gate : gates) gate = true;
  withdraw(&ownerC);
  withdraw(&ownerA);
  report(first, "plan: a thread waiting in lease() gets a freed slot before a posted task",
         "the posted task took the slot");
}

// allocateFloats: what it returns when asked for zeros is zero, also when it reuses a block freed
// with data in it (the kernel leaves padded output steps as they are); unasked, a reused block is
// not cleared (a call without padding writes every element); a block is reused only for a
// request of at least half its size; small sizes come from the C heap, zeroed too.
void memory() {
  auto zeros = [](const float* p, std::size_t n) { return std::all_of(p, p + n, [](float v) { return v == 0.0f; }); };
  const std::size_t n = (std::size_t(3) << 20) / sizeof(float);  // 3 MiB: mapped, and kept once freed
  std::size_t capacity = 0;
  float* a = allocateFloats(n, capacity, true);
  report(capacity >= n && zeros(a, n), "memory: a fresh mapped block is zero", "not zero");
  std::fill(a, a + capacity, 1.0f);
  freeFloats(a, capacity);
  std::size_t again = 0;
  float* b = allocateFloats(n - 1000, again, true);
  report(b == a && again == capacity && zeros(b, n - 1000), "memory: a freed block is reused, zeroed",
         b == a ? "not zero" : "not reused");
  std::fill(b, b + again, 1.0f);
  freeFloats(b, again);
  std::size_t unzeroed = 0;
  float* e = allocateFloats(n, unzeroed, false);
  report(e == b && std::all_of(e, e + n, [](float v) { return v == 1.0f; }),
         "memory: a freed block asked for without zeros is reused as it is", e == b ? "cleared" : "not reused");
  freeFloats(e, unzeroed);
  std::size_t smallCapacity = 0;
  float* c = allocateFloats(n / 3 + 1, smallCapacity, true);  // over 1 MiB, but under half the kept block
  report(c != b && zeros(c, n / 3 + 1), "memory: a block is not reused for a request under half its size",
         c == b ? "reused" : "not zero");
  freeFloats(c, smallCapacity);
  std::size_t tinyCapacity = 0;
  float* d = allocateFloats(100, tinyCapacity, true);
  report(tinyCapacity == 100 && zeros(d, 100), "memory: a small allocation is zero", "not zero");
  freeFloats(d, tinyCapacity);
  trimFloats();
}

}  // namespace birnn::checks
