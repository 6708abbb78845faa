// How one forward call is spread over threads: the plan (how many threads, and into how many
// chunks each direction's rows are cut) and the threads that carry it out. This is the seam for
// a persistent worker pool and a cost model: the forward pass sees only ThreadPlan, planThreads
// and runThreads. Results never depend on the plan.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>

namespace birnn::detail {

struct ThreadPlan {
  int threads = 1;     // threads that run the call, the calling thread included
  int chunks = 1;      // batch chunks per direction in the recurrence
  int projChunks = 1;  // row chunks per direction in the input projection
};

// `requested` threads at most, for a layer of `layerFlops` floating-point operations over
// `directions` directions, `batch` batch rows and `rows` = seqLen * batch projection rows.
ThreadPlan planThreads(int requested, int directions, int batch, std::ptrdiff_t rows, double layerFlops);

// A reusable barrier for the threads of one forward call. Waiters spin briefly (the phases it
// separates are often short, and the other thread is usually about to arrive), then sleep.
// abort() releases every waiter for good (wait() then returns false), for when a thread of the
// call could not be started.
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  bool wait();
  void abort();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  const int count_;
  std::atomic<int> arrived_{0};
  std::atomic<long> generation_{0};
  std::atomic<bool> aborted_{false};
};

// work(tid, count, barrier) runs once on each of `threads` threads (tid 0 on the calling
// thread) with a barrier shared by all, or once with count 1 and no barrier when the threads
// cannot be started (or threads is 1). A work function returns when barrier->wait() is false.
using ThreadWork = std::function<void(int tid, int count, Barrier* barrier)>;
void runThreads(int threads, const ThreadWork& work);

}  // namespace birnn::detail
