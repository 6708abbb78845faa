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

// Sizes a work buffer for a call. Its contents are dead, so when it must grow nothing is copied,
// and it grows with headroom (mapped pages cost nothing until touched), so that calls a little
// larger than the last do not each map and fault in a new buffer.
inline void resizeBuffer(Floats& buffer, std::size_t floats) {
  if (floats > buffer.capacity()) {
    Floats().swap(buffer);
    buffer.reserve(floats + floats / 4);
  }
  buffer.resize(floats);
}

// The work buffers of one call, kept for the next: fresh multi-MB buffers would cost a page
// fault per 4 KB on every call. Sized per call with resizeBuffer(), which only grows capacity.
struct Workspace {
  struct Rows {  // one (direction, batch chunk) task's recurrent state
    Floats h[2], c, cellOut;
    std::vector<const float*> prow;  // per column part, a step's input-projection rows
    std::vector<float*> orow;        // per column part, a step's layer-output rows
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
// by count and by bytes, and shrinks to the working set: workspaces much larger than recent calls
// needed are freed rather than kept (the next large call maps fresh memory). trim() frees
// them all; the TypeScript engine calls it when a model has been idle for a while.
class WorkspacePool {
 public:
  // Idle workspaces kept (thread_plan.h): as many as calls compute at once, or a call's groups.
  static std::size_t kept() { return static_cast<std::size_t>(keptWorkspaces(hardwareThreads())); }
  // Most bytes kept idle per Network: a W-b64 call (bi-LSTM, 2 layers, H256, T100, N64) needs
  // about 80 MB; a T = 1000 one ten times that, which is not kept.
  static constexpr std::size_t kMaxIdleBytes = std::size_t(256) << 20;
  // A workspace is kept only while it holds at most this many times what recent calls used (plus
  // this slack, so that small models never churn). Recent use is the largest of them, halving
  // with each release: a server's batches of 9 and of 64 sequences keep the 64's workspaces, where
  // the last call's use alone freed them every few batches, and the next large batch mapped and
  // faulted in tens of MB again (600 MB in 3 s, standard LSTM over HTTP); after large calls, a
  // few small ones let all their workspaces go.
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
    std::vector<std::unique_ptr<Workspace>> freed;  // declared first, so freed after the lock
    std::lock_guard<std::mutex> lock(mutex_);
    recentUse_ = std::max(ws->bytes(true), recentUse_ / 2);
    const std::size_t most = std::min(kMaxIdleBytes, kShrinkFactor * recentUse_ + kShrinkSlack);
    // Idle ones far larger than recent calls need go as well, not only the one released.
    for (auto& w : idle_) {
      if (w->bytes(false) > most) freed.push_back(std::move(w));
    }
    idle_.erase(std::remove(idle_.begin(), idle_.end(), nullptr), idle_.end());
    const std::size_t held = ws->bytes(false);
    std::size_t total = held;
    for (const auto& w : idle_) total += w->bytes(false);
    if (held <= most && idle_.size() < kept() && total <= kMaxIdleBytes) idle_.push_back(std::move(ws));
  }  // (one not kept is freed here, after the lock: parameters outlive locals)
  void trim() {
    std::vector<std::unique_ptr<Workspace>> freed;
    std::lock_guard<std::mutex> lock(mutex_);
    freed.swap(idle_);
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<Workspace>> idle_;
  std::size_t recentUse_ = 0;  // bytes
};

}  // namespace birnn::detail
