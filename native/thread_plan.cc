// The thread plan of a forward call and the threads that run it (thread_plan.h).
#include "thread_plan.h"

#include <algorithm>
#include <functional>
#include <system_error>
#include <thread>
#include <vector>

namespace birnn::detail {

namespace {
// A thread costs tens of microseconds (start, join, a barrier per phase): it is worth starting
// only for about this many floating-point operations of each layer.
constexpr double kFlopsPerThread = 4e6;
// Barrier waits that yield before sleeping: a few microseconds, about the time the last thread
// of a short phase takes to arrive; a sleep and wake-up costs more than that.
constexpr int kBarrierSpins = 2000;
}  // namespace

// The directions run side by side, then the batch is split further while each part keeps
// enough work to pay for a thread.
ThreadPlan planThreads(int requested, int directions, int batch, std::ptrdiff_t rows, double layerFlops) {
  ThreadPlan plan;
  int threads = std::min(requested, static_cast<int>(std::max(1.0, layerFlops / kFlopsPerThread)));
  plan.chunks = std::max(1, std::min(batch, threads / directions));
  plan.projChunks = std::max(1, std::min<int>(static_cast<int>(rows), threads / directions));
  plan.threads = std::max(1, std::min(threads, directions * std::max(plan.chunks, plan.projChunks)));
  return plan;
}

bool Barrier::wait() {
  const long generation = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
    arrived_.store(0, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.store(generation + 1, std::memory_order_release);
    cv_.notify_all();
    return !aborted_.load();
  }
  for (int spin = 0; spin < kBarrierSpins; ++spin) {
    if (generation_.load(std::memory_order_acquire) != generation || aborted_.load()) return !aborted_.load();
    std::this_thread::yield();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return aborted_.load() || generation_.load(std::memory_order_acquire) != generation; });
  return !aborted_.load();
}

void Barrier::abort() {
  std::lock_guard<std::mutex> lock(mutex_);
  aborted_.store(true);
  cv_.notify_all();
}

void runThreads(int threads, const ThreadWork& work) {
  bool parallel = false;
  if (threads > 1) {
    Barrier barrier(threads);
    std::vector<std::thread> pool;
    try {
      for (int t = 1; t < threads; ++t) pool.emplace_back(std::cref(work), t, threads, &barrier);
      parallel = true;
    } catch (const std::system_error&) {
      barrier.abort();  // the threads already started return at once; run on this thread alone
    }
    if (parallel) work(0, threads, &barrier);
    for (auto& th : pool) th.join();
  }
  if (!parallel) work(0, 1, nullptr);
}

}  // namespace birnn::detail
