// How a forward call is spread over threads: the plan (a cost model: how many threads, and into
// how many chunks each direction's rows are cut) and the process-wide worker pool that carries
// it out. The forward pass sees only ThreadPlan, planThreads and WorkerPool::run. Results never
// depend on the plan or on how many threads actually run it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace birnn::detail {

// What the plan is chosen from: the call, the machine, and the threads the caller allows.
struct PlanInput {
  int requested = 1;           // the call's `threads`: the most it may use
  int cores = 1;               // threads the machine runs at once
  int directions = 1;          // D
  int batch = 1;               // N
  std::ptrdiff_t rows = 1;     // real steps of all sequences (the sum of the lengths)
  double layerFlops = 0;       // floating-point operations of one layer, every direction
  double recurrenceFlops = 0;  // of those, the recurrence's (it splits by batch rows only)
};

struct ThreadPlan {
  int threads = 1;     // threads that run the call, the calling thread included
  int chunks = 1;      // batch chunks per direction in the recurrence
  int projChunks = 1;  // row chunks per direction in the input projection
};

// A pure function of its input, so that its choices are tested without timing.
ThreadPlan planThreads(const PlanInput& in);

// Threads the machine runs at once (at least 1).
int hardwareThreads();

// A reusable barrier for the threads of one call. Waiters spin with a pause instruction (the
// phases it separates are often microseconds long, and a sleep and wake-up costs more), then
// yield, then sleep.
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  const int count_;
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> generation_{0};
};

// work(tid, count, barrier) runs once on each of `count` threads, tid 0 on the calling thread;
// barrier is null when count is 1.
using ThreadWork = std::function<void(int tid, int count, Barrier* barrier)>;

// One pool of hardwareThreads() - 1 threads for the whole process, shared by every Network and
// every concurrent call, so that calls never start threads of their own and never oversubscribe
// the cores: at most hardwareThreads() threads compute at once, the callers' own included.
class WorkerPool {
  struct Job;

 public:
  // The compute slots of one call: its calling thread's, and those of the idle workers it was
  // granted. A call takes its lease before it allocates its work buffers, so that calls waiting
  // for a slot hold no memory. The destructor gives the slots back.
  class Lease {
   public:
    Lease(Lease&& other) noexcept : pool_(other.pool_), workers_(other.workers_) { other.pool_ = nullptr; }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
    // Threads that run() uses: the calling thread and the granted workers.
    int threads() const { return 1 + workers_; }
    // Runs `work` on every leased thread; returns when all are done.
    void run(const ThreadWork& work) const;

   private:
    friend class WorkerPool;
    Lease(WorkerPool* pool, int workers) : pool_(pool), workers_(workers) {}
    WorkerPool* pool_;
    int workers_;
  };

  static WorkerPool& shared();
  // Waits for a slot for the calling thread, then takes up to threads - 1 idle workers.
  Lease lease(int threads);

 private:
  struct Ticket {
    Job* job;
    int tid;
  };
  WorkerPool();
  void serve();

  std::mutex mutex_;
  std::condition_variable work_, slots_, finished_;
  std::deque<Ticket> tickets_;
  std::atomic<int> pending_{0};  // tickets queued, read without the lock by spinning workers
  int cores_;
  int usedSlots_ = 0;
  int idleWorkers_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace birnn::detail
