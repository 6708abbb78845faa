// The thread plan of a forward call, and the worker pool that carries it out.
#include "thread_plan.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <system_error>

#include "birnn.h"

#if defined(__linux__)
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BIRNN_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define BIRNN_PAUSE() __asm__ __volatile__("yield")
#else
#define BIRNN_PAUSE() ((void)0)
#endif

namespace birnn::detail {

namespace {
// A thread of the pool costs a hand-off per phase (well under a microsecond while it spins, a few
// when it was parked): worth it for about this many floating-point operations, some tens of
// microseconds of one core's work.
constexpr double kFlopsPerThread = 2e6;
// A recurrence chunk of fewer batch rows than this leaves most of each register tile empty
// (a tile holds 2-8 rows), so more threads would only add up the same weight traffic.
constexpr int kMinChunkRows = 4;
// Column parts put a barrier after every step: worth it from steps of this much work (a couple of
// microseconds of one core). On the 2-core VM, 2 parts of steps of 51-60 kFLOP (uni LSTM H80, RNN
// H160, GRU H100, batch 1) took 1.15-1.22x as long as one thread with no barrier.
constexpr double kMinSharedStepFlops = 80e3;
// Once there is a barrier, each further part costs it little: parts down to this much work (about
// half a microsecond). W-b1's RNN (131 kFLOP a step) on the lent 16-core VM: 6 parts a direction
// took 0.72-0.81 ms at 8+ threads, 3 parts (a 40 kFLOP floor) 0.83-0.95 (one host; 0.74-0.95
// against 0.79-0.99 on another).
constexpr double kMinPartFlops = 20e3;
// An input-projection chunk of fewer rows than this is mostly the B panel streamed again.
constexpr std::ptrdiff_t kMinProjectionRows = 16;
// Input-projection chunks per thread, when several threads share it.
constexpr std::ptrdiff_t kChunksPerThread = 4;
// Groups of sequences (ThreadPlan::groups) step fewer rows at a time through W_hh than a
// direction's whole batch: at no cost while W_hh (one direction's, with W_hr) stays in L2, at
// some where it streams from L3 (the I128 H256 LSTM, 1 MB a direction, at batch 64 on one
// thread: 3-13% slower in groups of 16). Every L2 since Haswell holds this much.
constexpr std::size_t kGroupRecurrentBytes = std::size_t(256) << 10;
// A group's sequences: at most this many where the groups allow it (keptWorkspaces), so that its
// projections and layer outputs stay in cache from one layer to the next (the seed's RNN at batch 64, lengths 20..100, one thread: 16
// sequences a call ran 1.3x as fast a sequence as 64), and at least this many, to fill the
// register tiles.
constexpr int kGroupRows = 16;
constexpr int kMinGroupRows = 8;
// Groups that leave some of the call's threads idle (fewer sequences than 8 a thread) are still
// worth it while a thread's share of a layer is this small, some hundreds of microseconds of a
// core, where the other plan's phases cost more than the idle threads; beyond it, that plan uses
// every thread (W-b64's RNN, W_hh 256 KiB a direction, on 16 threads: 8 groups took 1.5-1.7
// times as long as 16 batch chunks).
constexpr double kGroupFlopsPerThread = 50e6;
// Waits for work or for a phase's end: pause-spins (tens of microseconds: phases are often that
// short, and a sleep and wake-up costs more), then yields, then a sleep.
constexpr int kSpins = 2000;
constexpr int kYields = 50;
#if defined(__linux__)
// The pool's threads run at this nice value, below the threads that call in.
constexpr int kWorkerNice = 5;
#endif

// Pause-spins, then yields, until done() or the budget runs out; true when done() came true.
template <typename Done>
bool pauseUntil(Done done) {
  for (int i = 0; i < kSpins; ++i) {
    if (done()) return true;
    BIRNN_PAUSE();
  }
  return done();
}
template <typename Done>
bool yieldUntil(Done done) {
  for (int i = 0; i < kYields; ++i) {
    if (done()) return true;
    std::this_thread::yield();
  }
  return done();
}
template <typename Done>
bool spinUntil(Done done) {
  return pauseUntil(done) || yieldUntil(done);
}
}  // namespace

int poolThreads() {
  static const int threads = [] {
#if !defined(__wasi__)  // the wasm module imports nothing, the environment included
    // An override, for tests (more threads than this machine's cores) and for containers whose
    // CPU quota is below the CPUs they may run on.
    if (const char* env = std::getenv("BIRNN_POOL_THREADS")) {
      const long n = std::strtol(env, nullptr, 10);
      if (n >= 1 && n <= 1024) return static_cast<int>(n);
    }
#endif
    // hardware_concurrency() is 0 where threads are unknown or absent (the wasm build): no pool.
    int n = static_cast<int>(std::thread::hardware_concurrency());
#if defined(__linux__)
    // The CPUs this process may run on (taskset, a container's cpuset), as Node's
    // os.availableParallelism() counts them, not every CPU of the machine.
    cpu_set_t set;
    if (n > 0 && sched_getaffinity(0, sizeof set, &set) == 0) n = std::min(n, CPU_COUNT(&set));
    // And no more than a container's CPU quota (Kubernetes' CPU limit): threads beyond it only
    // get throttled, and a throttled member stalls its team's every step.
    // (stdio, not <fstream>: libstdc++'s file streams would tie the prebuilt addon to glibc 2.33.)
    if (std::FILE* cpuMax = n > 0 ? std::fopen("/sys/fs/cgroup/cpu.max", "r") : nullptr) {
      char line[64] = {};
      if (std::fgets(line, sizeof line, cpuMax) != nullptr) {
        if (const int cpus = cpusOfQuota(line)) n = std::min(n, cpus);
      }
      std::fclose(cpuMax);
    }
#endif
    return n;
  }();
  return threads;
}

int hardwareThreads() { return std::max(1, poolThreads()); }

int cpusOfQuota(const std::string& cpuMax) {
  long long quota = 0, period = 0;
  if (std::sscanf(cpuMax.c_str(), "%lld %lld", &quota, &period) != 2 || quota <= 0 || period <= 0) return 0;
  return static_cast<int>(std::min(1024LL, (quota + period - 1) / period));
}

ThreadPlan planThreads(const PlanInput& in) {
  ThreadPlan plan;
  const int D = std::max(1, in.directions);
  // Never more threads than the machine has, nor than the work pays for.
  const int affordable = static_cast<int>(std::max(1.0, in.layerFlops / kFlopsPerThread));
  const int threads = std::max(1, std::min({in.requested, in.cores, affordable}));
  // Many sequences of a small model: groups, each whole on one thread, as many as the threads can
  // take (in whole rounds, so that they end together) or as cache wants. No thread then waits
  // for another before the call ends: a bi-RNN of 4 layers on 2 threads otherwise has 14
  // phases, each ending when its slowest part does.
  if (in.recurrentBytes <= kGroupRecurrentBytes && in.batch >= 2 * kMinGroupRows) {
    const int teams = std::min(threads, in.batch / kMinGroupRows);
    const bool worth = teams == threads || in.layerFlops / threads < kGroupFlopsPerThread;
    const int forCache = (in.batch + kGroupRows - 1) / kGroupRows;
    // No more groups than the model keeps workspaces: the rest would be freed and mapped again by
    // every call (a batch of 256 on 2 cores: 4 groups of 64, not 16 of 16).
    const int most = teams * std::max(1, keptWorkspaces(in.cores) / teams);
    const int groups = std::min(most, teams * ((forCache + teams - 1) / teams));
    if (groups > 1 && worth) {
      plan.threads = teams;
      plan.groups = groups;
      return plan;
    }
  }
  // The recurrence: the directions side by side, each cut into chunks of batch rows that run
  // with no barrier per step; small batches stay whole. Threads still left share each chunk's
  // steps by W_hh's panels (the only way one sequence can use more than a thread per direction),
  // as long as each part's share of a step outweighs the barrier after it.
  const int recurrenceThreads =
      std::max(1, std::min(threads, static_cast<int>(std::max(1.0, in.recurrenceFlops / kFlopsPerThread))));
  plan.chunks = std::max(1, std::min(in.batch / kMinChunkRows, recurrenceThreads / D));
  // A team waits every step for its slowest member, so one preempted thread costs each step a
  // wake-up: teams leave a quarter of the cores to the rest of the process and the machine (the
  // event loop, the collector, other guests' threads on a VM's host) where it has more than two.
  // On the lent 16-core VM, W-b1 on 16 teamed threads (8 parts a direction) took 5 ms, on 14 (7
  // parts) 1.39-1.59 and on 12 (6) 1.07-1.43 (LSTM and GRU; bench/RESULTS.md).
  const int spare = in.cores > 2 ? std::max(1, in.cores / 4) : 0;
  const int teamThreads = std::min(recurrenceThreads, in.cores - spare);
  const double chunkStepFlops = in.stepFlops / plan.chunks;
  const double partsWorth = chunkStepFlops < kMinSharedStepFlops ? 1 : chunkStepFlops / kMinPartFlops;
  const int panels = std::max(1, in.panels);
  const int parts = std::max(
      1, std::min({teamThreads / (D * plan.chunks), panels, static_cast<int>(partsWorth), in.teamLimit}));
  // A step lasts as long as its widest part: no more parts than that width needs. W-b1's RNN on
  // AVX-512 has 8 panels, which 6 parts split 1 or 2 each, as slowly as 4 parts of 2 and with 4
  // more threads at the barrier (16-core VM: 0.83 and 0.77 ms against 0.84 and 0.75, two hosts).
  const int partPanels = (panels + parts - 1) / parts;
  plan.columnParts = (panels + partPanels - 1) / partPanels;
  // The input projection: every row of every step is independent; all threads share it, taking
  // chunks as they finish the last, a few chunks a thread so that a thread the OS preempts
  // holds up only its current one.
  const std::ptrdiff_t projThreads =
      std::max<std::ptrdiff_t>(1, std::min<std::ptrdiff_t>(in.rows / kMinProjectionRows, (threads + D - 1) / D));
  const int widest = std::max(plan.chunks * plan.columnParts, static_cast<int>(projThreads));
  plan.threads = std::max(1, std::min(threads, D * widest));
  const std::ptrdiff_t projChunks = projThreads * (projThreads > 1 ? kChunksPerThread : 1);
  plan.projChunks =
      static_cast<int>(std::max<std::ptrdiff_t>(1, std::min(in.rows / kMinProjectionRows, projChunks)));
  return plan;
}

std::int64_t nowNs() {
#if defined(__wasi__)
  return 0;
#else
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
#endif
}

TeamGauge& TeamGauge::shared() {
  static TeamGauge* gauge = new TeamGauge();  // never destroyed: calls may still run at exit
  return *gauge;
}

int TeamGauge::limit(std::int64_t now) {
  if (!limited_.load(std::memory_order_relaxed)) return kNoLimit;
  std::lock_guard<std::mutex> lock(mutex_);
  if (limit_ == kNoLimit || now < nextTry_) return limit_;
  nextTry_ = now + waitNs_;  // one call tries at a time
  trying_ = limit_ * 2;
  return trying_;
}

void TeamGauge::report(int allowed, int parts, std::int64_t wallNs, std::int64_t lateNs, std::int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Only the try's own report moves the limit up, or the wait: concurrent calls planned before a
  // change report what they were planned with.
  const bool tried = allowed == trying_;
  if (tried) trying_ = 0;
  if (lateNs * 4 > wallNs) {
    // One stall may be a hiccup (on the idle 16-core VM, a member held up for a fraction of a
    // short call now and then); a try, or a second stall in a row, is not.
    if (tried) waitNs_ = std::min(2 * waitNs_, kLastWaitNs);
    else if (++stalls_ < 2) return;
    stalls_ = 0;
    limit_ = std::min(limit_, std::max(1, parts / 2));
    nextTry_ = now + waitNs_;
    limited_.store(true, std::memory_order_relaxed);
  } else {
    stalls_ = 0;
    if (tried && allowed > limit_) {  // a try that went well
      limit_ = allowed;
      waitNs_ = kFirstWaitNs;
      if (limit_ >= hardwareThreads()) {
        limit_ = kNoLimit;
        limited_.store(false, std::memory_order_relaxed);
      }
    }
  }
}

void TeamGauge::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  limit_ = kNoLimit;
  trying_ = 0;
  stalls_ = 0;
  waitNs_ = kFirstWaitNs;
  limited_.store(false, std::memory_order_relaxed);
}

std::int64_t StepBarrier::longestWaitNs(int count) const {
  std::int64_t longest = 0;
  for (int i = 0; i < count; ++i) longest = std::max(longest, slots_[i].lateNs);
  return longest;
}

void StepBarrier::arriveAndWait(int index, int count) {
  assert(0 <= index && index < count && count <= size_);
  const unsigned round = slots_[index].round.load(std::memory_order_relaxed) + 1;
  // Sequentially consistent with the sleepers' count below: either this thread sees a sleeper
  // and wakes it, or the sleeper sees this arrival before it sleeps.
  slots_[index].round.store(round, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    released_.notify_all();
  }
  // Another thread is at most one round ahead (it then waits for this one).
  auto done = [&] {
    for (int i = 0; i < count; ++i) {
      if (static_cast<int>(slots_[i].round.load(std::memory_order_seq_cst) - round) < 0) return false;
    }
    return true;
  };
  if (pauseUntil(done)) return;
  // Past the pause budget (tens of microseconds) a member is late by far more than a step: how
  // long, for the gauge (a yield may give the core away for a time slice, as a sleep does).
  const std::int64_t since = nowNs();
  if (!yieldUntil(done)) {
    std::unique_lock<std::mutex> lock(mutex_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    released_.wait(lock, done);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (round > 1) slots_[index].lateNs += nowNs() - since;
}

WorkerPool& WorkerPool::shared() {
  // Never destroyed: its threads may still sleep in serve() when the process exits.
  static WorkerPool* pool = new WorkerPool();
  return *pool;
}

WorkerPool::WorkerPool() {
  std::lock_guard<std::mutex> lock(mutex_);
  // No workers where threads are absent (the wasm build): every call runs on its own thread.
  for (int i = 0; i < poolThreads(); ++i) {
    try {
      threads_.emplace_back([this] { serve(); });
    } catch (const std::system_error&) {
      break;  // the process may not start more threads: calls run on fewer, or on their own
    }
    ++idleWorkers_;
  }
}

struct WorkerPool::Job {
  const ThreadWork* work;
  int count;
  std::atomic<int> remaining;  // threads still running it
};

namespace {
// Set on a pool thread while it runs a posted task: the task's forward calls lease this thread.
thread_local bool tlsRunsTask = false;
}  // namespace

void WorkerPool::serve() {
#if defined(__linux__)
  // Below the threads that call in (the event loop's above all): on a busy machine a compute
  // thread yields the core to them at once, and computes at full speed whenever they are idle.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kWorkerNice);
#endif
  for (;;) {
    Ticket ticket{};
    Posted posted{};
    {
      spinUntil([&] {
        return pending_.load(std::memory_order_acquire) > 0 ||
               (queuedTasks_.load(std::memory_order_acquire) > 0 && idleWorkers_.load(std::memory_order_acquire) > 0);
      });
      std::unique_lock<std::mutex> lock(mutex_);
      // A phase's parts first: their slots are already counted out, and their call waits on them.
      // Then a posted task, when a slot is free that no thread waits for in lease().
      work_.wait(lock, [&] { return !tickets_.empty() || (!posted_.empty() && idleWorkers_ > leaseWaiters_); });
      if (!tickets_.empty()) {
        ticket = tickets_.front();
        tickets_.pop_front();
        pending_.fetch_sub(1, std::memory_order_release);
      } else {
        posted = std::move(posted_.front());
        posted_.pop_front();
        queuedTasks_.fetch_sub(1, std::memory_order_release);
        --idleWorkers_;
        runningOwners_.push_back(posted.owner);
      }
    }
    if (posted.task) {
      tlsRunsTask = true;
      posted.task->run();
      tlsRunsTask = false;
      posted.task.reset();
      std::lock_guard<std::mutex> lock(mutex_);
      runningOwners_.erase(std::find(runningOwners_.begin(), runningOwners_.end(), posted.owner));
      ++idleWorkers_;
      slotsFreed();
      tasksDone_.notify_all();
      continue;
    }
    Job& job = *ticket.job;
    (*job.work)(ticket.tid, job.count);
    if (job.remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller checks `remaining` under it before it sleeps
      finished_.notify_all();
    }
  }
}

void WorkerPool::slotsFreed() {
  slots_.notify_all();
  if (!posted_.empty()) work_.notify_all();  // a worker for each slot freed, each re-checking
}

void WorkerPool::post(const void* owner, std::unique_ptr<Task> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!threads_.empty()) {
      posted_.push_back({owner, std::move(task)});
      queuedTasks_.fetch_add(1, std::memory_order_release);
      if (idleWorkers_ > leaseWaiters_) work_.notify_one();
      return;
    }
  }
  task->run();  // no worker could be started: the task's calls run on this thread
}

std::vector<std::unique_ptr<Task>> WorkerPool::withdraw(const void* owner) {
  std::vector<std::unique_ptr<Task>> taken;
  std::unique_lock<std::mutex> lock(mutex_);
  for (auto it = posted_.begin(); it != posted_.end();) {
    if (it->owner != owner) {
      ++it;
      continue;
    }
    taken.push_back(std::move(it->task));
    it = posted_.erase(it);
    queuedTasks_.fetch_sub(1, std::memory_order_release);
  }
  tasksDone_.wait(lock, [&] {
    return std::find(runningOwners_.begin(), runningOwners_.end(), owner) == runningOwners_.end();
  });
  return taken;
}

WorkerPool::Lease WorkerPool::lease() {
  if (tlsRunsTask) return Lease(this, true);
  std::unique_lock<std::mutex> lock(mutex_);
  if (threads_.empty()) return Lease(nullptr, false);  // no worker could be started: run on the caller
  ++leaseWaiters_;
  slots_.wait(lock, [&] { return idleWorkers_ > 0; });
  --leaseWaiters_;
  --idleWorkers_;
  return Lease(this, false);
}

WorkerPool::Lease::~Lease() {
  if (pool_ == nullptr || own_) return;  // a posted task's thread gives its slot back when the task ends
  std::lock_guard<std::mutex> lock(pool_->mutex_);
  ++pool_->idleWorkers_;
  pool_->slotsFreed();
}

void WorkerPool::Lease::run(int threads, const ThreadWork& work) const {
  if (pool_ == nullptr || threads == 1) return work(0, 1);
  WorkerPool& pool = *pool_;
  // Part 0 runs on this thread (the held slot), the others on the idle workers it borrows.
  Job job{&work, 1, {0}};
  {
    std::lock_guard<std::mutex> lock(pool.mutex_);
    const int extra = std::max(0, std::min(threads - 1, pool.idleWorkers_.load()));
    pool.idleWorkers_ -= extra;
    job.count = 1 + extra;
    job.remaining.store(extra, std::memory_order_relaxed);
    for (int tid = 1; tid <= extra; ++tid) pool.tickets_.push_back({&job, tid});
    pool.pending_.fetch_add(extra, std::memory_order_release);
  }
  const int extra = job.count - 1;
  if (extra == 0) return work(0, 1);
  if (extra == 1) pool.work_.notify_one();
  else pool.work_.notify_all();
  std::exception_ptr error;  // thrown by this thread's part: rethrown once the others are done with `job`
  try {
    work(0, job.count);
  } catch (...) {
    error = std::current_exception();
  }
  // This thread waits on its own slot's core: it spins, then sleeps.
  auto done = [&] { return job.remaining.load(std::memory_order_acquire) == 0; };
  spinUntil(done);
  {
    std::unique_lock<std::mutex> lock(pool.mutex_);
    pool.finished_.wait(lock, done);
    pool.idleWorkers_ += extra;
    pool.slotsFreed();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace birnn::detail

int birnn::computeThreads() { return detail::hardwareThreads(); }

void birnn::post(const void* owner, std::unique_ptr<Task> task) {
  detail::WorkerPool::shared().post(owner, std::move(task));
}

std::vector<std::unique_ptr<birnn::Task>> birnn::withdraw(const void* owner) {
  return detail::WorkerPool::shared().withdraw(owner);
}
