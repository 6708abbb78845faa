// The work buffers of a forward call, and the pool that keeps them between calls: 64-byte
// aligned storage (large buffers mapped straight from the OS), the per-call Workspace, and
// WorkspacePool, from which concurrent calls on one Network each take their own.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "pages.h"
#include "thread_plan.h"

namespace birnn::detail {

// Storage on 64-byte boundaries (a cache line, a full AVX-512 vector); large buffers are mapped
// (pages.h): the work buffers of one call can be tens of MB.
template <typename T>
struct Aligned {
  using value_type = T;
  Aligned() = default;
  template <typename U>
  Aligned(const Aligned<U>&) {}
  T* allocate(std::size_t n) {
#if BIRNN_MMAP
    if (n * sizeof(T) >= kMappedBytes) return static_cast<T*>(mapPages(n * sizeof(T)));
#endif
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T* p, std::size_t n) {
#if BIRNN_MMAP
    if (n * sizeof(T) >= kMappedBytes) {
      unmapPages(p, n * sizeof(T));
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

// The work buffers of one call, kept for the next: fresh multi-MB buffers would cost a page
// fault per 4 KB on every call. Sized per call with resize(), which only grows capacity.
struct Workspace {
  struct Rows {  // one (direction, batch chunk) task's recurrent state
    Floats h[2], c, cellOut;
    std::vector<const float*> prow;  // per column part, a step's input-projection rows
  };
  Floats input;           // the input in packed order, when it is not already
  Floats reversed;        // a layer's input in reversed packed order, for the backward direction
  std::vector<Floats> P;  // per direction: the input projection of every real step
  Floats layerOut[2];     // packed layer outputs, alternating, when not written in place
  std::vector<Rows> rows;

  // Bytes held (capacity), or used by the last call (size).
  std::size_t bytes(bool used) const {
    std::size_t floats = 0;
    auto add = [&](const Floats& f) { floats += used ? f.size() : f.capacity(); };
    add(input);
    add(reversed);
    for (const Floats& p : P) add(p);
    for (const Floats& o : layerOut) add(o);
    for (const Rows& r : rows) {
      for (const Floats& h : r.h) add(h);
      add(r.c);
      add(r.cellOut);
    }
    return floats * sizeof(float);
  }
};

// Idle workspaces of one Network; concurrent calls each take their own. What is kept is bounded
// by count and by bytes, and shrinks to the working set: a workspace much larger than its last
// call needed is freed rather than kept (the next large call maps fresh memory). trim() frees
// them all; the TypeScript engine calls it when a model has been idle for a while.
class WorkspacePool {
 public:
  // Idle workspaces kept (thread_plan.h): as many as calls compute at once, or a call's groups.
  static std::size_t kept() { return static_cast<std::size_t>(keptWorkspaces(hardwareThreads())); }
  // Most bytes kept idle per Network: a W-b64 call (bi-LSTM, 2 layers, H256, T100, N64) needs
  // about 80 MB; a T = 1000 one ten times that, which is not kept.
  static constexpr std::size_t kMaxIdleBytes = std::size_t(256) << 20;
  // A workspace is kept only while it holds at most this many times what its call used (plus
  // this slack, so that small models never churn).
  static constexpr std::size_t kShrinkFactor = 4;
  static constexpr std::size_t kShrinkSlack = std::size_t(16) << 20;

  std::unique_ptr<Workspace> acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (idle_.empty()) return std::make_unique<Workspace>();
    auto ws = std::move(idle_.back());
    idle_.pop_back();
    return ws;
  }
  void release(std::unique_ptr<Workspace> ws) {
    const std::size_t held = ws->bytes(false);
    if (held > kMaxIdleBytes || held > kShrinkFactor * ws->bytes(true) + kShrinkSlack) return;  // freed here
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t total = held;
    for (const auto& w : idle_) total += w->bytes(false);
    if (idle_.size() < kept() && total <= kMaxIdleBytes) idle_.push_back(std::move(ws));
  }
  void trim() {
    std::vector<std::unique_ptr<Workspace>> freed;
    std::lock_guard<std::mutex> lock(mutex_);
    freed.swap(idle_);
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<Workspace>> idle_;
};

}  // namespace birnn::detail
