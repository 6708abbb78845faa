// Force-included (-include) into every source of the WebAssembly build by scripts/build-wasm.mjs,
// and nowhere else. The wasm32-wasi libc++ is built without threads (_LIBCPP_HAS_NO_THREADS), so
// <mutex>, <condition_variable> and <thread> declare nothing; the kernel's sources use them
// (workspace.h's pool lock, thread_plan's worker pool). This supplies single-threaded
// stand-ins, so those files compile unchanged: a wasm instance runs one call at a time on one
// thread: hardware_concurrency() is 0, so the worker pool starts no thread. Starting one
// anyway traps (std::thread's constructor) instead of running wrong.
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#if !defined(_LIBCPP_HAS_NO_THREADS)
#error "wasm_no_threads.h is for a libc++ without threads (the wasm32-wasi build) only"
#endif

namespace std {
inline namespace _LIBCPP_ABI_NAMESPACE {

struct mutex {
  void lock() {}
  bool try_lock() { return true; }
  void unlock() {}
};

template <class M>
class unique_lock {
 public:
  explicit unique_lock(M& m) : m_(&m) { m.lock(); }
  ~unique_lock() { m_->unlock(); }
  void lock() { m_->lock(); }
  void unlock() { m_->unlock(); }

 private:
  M* m_;
};

// One thread: whatever a waiter waits for can never be made true by another, so a wait whose
// predicate is false is a bug.
struct condition_variable {
  void notify_one() {}
  void notify_all() {}
  template <class Lock, class Pred>
  void wait(Lock&, Pred pred) {
    if (!pred()) __builtin_trap();
  }
};

class thread {
 public:
  thread() = default;
  template <class F, class... Args>
  explicit thread(F&&, Args&&...) {
    __builtin_trap();
  }
  bool joinable() const { return false; }
  void join() {}
  // No threads to run on: the worker pool (thread_plan.cc) starts none, and every call runs inline.
  static unsigned hardware_concurrency() noexcept { return 0; }
};

namespace this_thread {
inline void yield() {}
}  // namespace this_thread

}  // namespace _LIBCPP_ABI_NAMESPACE
}  // namespace std
