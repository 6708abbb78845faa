// How a forward call is spread over threads: the plan (a cost model: how many threads, and into
// how many chunks each direction's rows are cut, and into how many column parts each chunk's
// steps) and the process-wide worker pool that carries it out. The forward pass sees only
// ThreadPlan, planThreads, WorkerPool::Lease::run and StepBarrier. Results never depend on the
// plan or on how many threads actually run it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "birnn.h"

namespace birnn::detail {

// What the plan is chosen from: the call, the machine, and the threads the caller allows.
struct PlanInput {
  int requested = 1;           // the call's `threads`: the most it may use
  int cores = 1;               // threads the machine runs at once
  int directions = 1;          // D
  int batch = 1;               // N
  std::ptrdiff_t rows = 1;     // real steps of all sequences (the sum of the lengths)
  double layerFlops = 0;       // floating-point operations of one layer, every direction
  double recurrenceFlops = 0;  // of those, the recurrence's
  double stepFlops = 0;        // of one step of one direction, every batch row
  int panels = 1;              // W_hh's panels: the most parts a step's columns split into
  std::size_t recurrentBytes = 0;  // packed W_hh (and W_hr) of one direction, the largest layer's
  int teamLimit = 1 << 20;         // the most column parts a team may have now (TeamGauge)
};

struct ThreadPlan {
  int threads = 1;      // most threads any phase of the call runs on, the calling thread included
  int chunks = 1;       // batch chunks per direction in the recurrence, which need no barrier
  int columnParts = 1;  // parts of each chunk's W_hh panels, each on its own thread, with a
                        // barrier per step (D * chunks * columnParts threads at once)
  int projChunks = 1;   // row chunks per direction in the input projection, which threads take
                        // in turn (a few per thread)
  int groups = 1;       // > 1: groups of sequences, each computed whole (every layer and direction)
                        // by one thread, with no phase between layers; then chunks, columnParts
                        // and projChunks are 1 (within a group)
};

// A pure function of its input, so that its choices are tested without timing.
ThreadPlan planThreads(const PlanInput& in);

// Idle workspaces a model keeps (WorkspacePool) on a machine of `cores`: one per thread of the
// pool, and 4 on a smaller machine, where one more call may wait for each. A plan has at most
// that many groups, each of which takes one for the call.
inline int keptWorkspaces(int cores) { return cores > 4 ? cores : 4; }

// Threads of the worker pool: the CPUs this process may run on, within its cgroup's CPU quota,
// or BIRNN_POOL_THREADS when set (1 to 1024); 0 where threads are absent (wasm).
int poolThreads();
// The CPUs a cgroup v2 `cpu.max` line ("<quota> <period>" in microseconds) allows, rounded up;
// 0 for no quota ("max <period>") or a line it cannot read.
int cpusOfQuota(const std::string& cpuMax);
// Threads the machine runs at once, as the plan counts them: poolThreads(), at least 1.
int hardwareThreads();

// work(tid, count) runs once on each of `count` threads, tid 0 on the calling thread: one phase
// of a call, whose parts each write their own rows.
using ThreadWork = std::function<void(int tid, int count)>;

// Nanoseconds of a monotonic clock (0 in the wasm build, whose module imports nothing: it has no
// teams to time).
std::int64_t nowNs();

// How many column parts a team may have now. A team waits at every step for its slowest member,
// so a member that the OS takes off its core (another busy process, a VM's busy host) stalls
// every step for up to a scheduler's time slice (16-core VM beside 8 busy processes: W-b1 LSTM
// 13-14 ms on its default 12 threads, 8 on one thread, 3.2-3.7 with the gauge). Two calls in a row
// whose teams spent a quarter of their time waiting for members late by more than the pause-spin
// halve the limit; now and then a call may try twice the limit, less often after each try that
// stalls, until the limit is gone again. Results never depend on it (nor on any plan).
class TeamGauge {
 public:
  static constexpr int kNoLimit = 1 << 20;
  static TeamGauge& shared();
  // The limit for a call planned at `now` (nowNs()).
  int limit(std::int64_t now);
  // That call, planned with limit `allowed`, ran teams of up to `parts` parts for `wallNs`, whose
  // members waited for late ones for `lateNs` of it (phase by phase, the longest waiter's).
  void report(int allowed, int parts, std::int64_t wallNs, std::int64_t lateNs, std::int64_t now);
  // Forgets what it has seen: the kernel tests' calls, each planned as on an idle machine.
  void reset();

 private:
  static constexpr std::int64_t kFirstWaitNs = 10'000'000;  // between tries: 10 ms, doubling to
  static constexpr std::int64_t kLastWaitNs = 6'400'000'000;  // 6.4 s (a failed try costs a call)
  std::mutex mutex_;
  std::atomic<bool> limited_{false};  // read without the mutex: most calls never see a limit
  int limit_ = kNoLimit;
  int trying_ = 0;  // the limit of the try under way, if any
  int stalls_ = 0;  // calls in a row that stalled, since the limit last changed
  std::int64_t nextTry_ = 0;
  std::int64_t waitNs_ = kFirstWaitNs;
};

// The threads of one team (the column parts of a batch chunk's steps) wait here for one another
// after each step: they pause-spin (a step takes microseconds), then yield, then sleep. Each
// thread counts its arrivals in a cache line of its own, which the others read: the last arrival
// costs each waiter one line transfer, where a shared counter passed its line from core to core
// for every arrival (on the 16-core VM, several hundred ns a step).
class StepBarrier {
 public:
  // For teams of up to `slots` threads.
  explicit StepBarrier(int slots) : slots_(new Slot[slots]), size_(slots) {}
  // Thread `index` (< count <= slots) arrives for the n-th time, and returns once threads
  // 0..count-1 have each arrived n times. Every call on one barrier has the same `count`: a
  // thread left out of some rounds would lag behind the others for good (forward.cc makes a
  // fresh barrier for each phase).
  void arriveAndWait(int index, int count);
  // The longest that any of threads 0..count-1 waited here past the pause-spin, after their
  // first round (which waits for the threads to start), once they are done with it.
  std::int64_t longestWaitNs(int count) const;

 private:
  struct alignas(64) Slot {
    std::atomic<unsigned> round{0};
    std::int64_t lateNs = 0;  // written by its own thread only
  };
  std::unique_ptr<Slot[]> slots_;
  [[maybe_unused]] int size_;  // for the assert
  alignas(64) std::atomic<int> sleepers_{0};  // not on a line the spinning threads read
  std::mutex mutex_;
  std::condition_variable released_;
};

// One pool of hardwareThreads() threads for the whole process, shared by every Network and every
// concurrent call: calls never start threads of their own, and never oversubscribe the cores, as
// every computing thread holds a slot of the pool. They run at a lower priority than the threads
// that call in, so a busy kernel never starves the event loop. Posted tasks (birnn::post: the
// event loop's forward() calls) run on the pool's threads themselves, each holding a compute
// slot; a thread that calls in (forwardSync(), which blocks it anyway) computes on the slot it
// holds itself: handing its phases to a worker cost a call of a 1-unit model 10 µs, now 4.
class WorkerPool {
  struct Job;

 public:
  // One compute slot held for a call's whole run, by the thread that holds the lease, which runs
  // each phase's first part itself; each phase then borrows idle workers for its other parts for
  // as long as it runs, so a phase that needs fewer threads (one sequence's recurrence) leaves the
  // others to concurrent calls. A call takes its lease before it allocates its work buffers, so
  // calls waiting for a slot hold no memory. The destructor gives the slot back. In a posted task
  // the slot is the task's own thread's.
  class Lease {
   public:
    Lease(Lease&& other) noexcept : pool_(other.pool_), own_(other.own_) { other.pool_ = nullptr; }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
    // Runs `work` on this thread and up to threads - 1 idle workers, all at once (so they may wait
    // for one another); returns when all are done.
    void run(int threads, const ThreadWork& work) const;

   private:
    friend class WorkerPool;
    Lease(WorkerPool* pool, bool own) : pool_(pool), own_(own) {}
    WorkerPool* pool_;
    bool own_;  // this thread is the held worker (a posted task)
  };

  static WorkerPool& shared();
  // Waits until a worker is idle, and holds it (in a posted task: the task's own thread, at once).
  Lease lease();
  // birnn::post and birnn::withdraw.
  void post(const void* owner, std::unique_ptr<Task> task);
  std::vector<std::unique_ptr<Task>> withdraw(const void* owner);

 private:
  struct Ticket {
    Job* job;
    int tid;
  };
  struct Posted {
    const void* owner;
    std::unique_ptr<Task> task;
  };
  WorkerPool();
  void serve();
  // Slots were given back (idleWorkers_ rose): wakes what waits for one. Under mutex_.
  void slotsFreed();

  std::mutex mutex_;
  std::condition_variable work_, slots_, finished_, tasksDone_;
  std::deque<Ticket> tickets_;
  std::deque<Posted> posted_;               // tasks not started, in order
  std::vector<const void*> runningOwners_;  // one entry per task running
  // Changed under the mutex; read without it by spinning workers.
  std::atomic<int> pending_{0};      // tickets queued
  std::atomic<int> queuedTasks_{0};  // posted_.size()
  std::atomic<int> idleWorkers_{0};  // slots neither held by a call nor lent to one of its phases
  int leaseWaiters_ = 0;             // threads waiting in lease(), which go before posted tasks
  std::vector<std::thread> threads_;
};

}  // namespace birnn::detail
