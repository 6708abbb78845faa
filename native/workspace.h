// The work buffers of a forward call, and the pool that keeps them between calls: 64-byte
// aligned storage (large buffers mapped straight from the OS), the per-call Workspace, and
// WorkspacePool, from which concurrent calls on one Network each take their own.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define BIRNN_MMAP 1
#else
#define BIRNN_MMAP 0
#endif

namespace birnn::detail {

// Storage on 64-byte boundaries (a cache line, a full AVX-512 vector). Large buffers are mapped
// straight from the OS and unmapped when freed: the work buffers of one call can be tens of MB,
// and glibc would otherwise keep them in the arenas of the libuv threads that freed them.
template <typename T>
struct Aligned {
  using value_type = T;
  static constexpr std::size_t kMapped = std::size_t(1) << 20;
  Aligned() = default;
  template <typename U>
  Aligned(const Aligned<U>&) {}
  T* allocate(std::size_t n) {
#if BIRNN_MMAP
    if (n * sizeof(T) >= kMapped) {
      void* p = mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      return static_cast<T*>(p);
    }
#endif
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T* p, std::size_t n) {
#if BIRNN_MMAP
    if (n * sizeof(T) >= kMapped) {
      munmap(p, n * sizeof(T));
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
    std::vector<const float*> prow;
  };
  std::vector<Floats> P;  // per direction: the input projection of every time step
  Floats layerOut[2];     // layer outputs between layers, when the caller wants none
  std::vector<Rows> rows;
};

// Idle workspaces of one Network; concurrent calls each take their own.
class WorkspacePool {
 public:
  // Idle workspaces kept: libuv runs 4 forward() calls at once by default. Calls beyond that
  // allocate their own and free them when done.
  static constexpr std::size_t kPoolSize = 4;

  std::unique_ptr<Workspace> acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (idle_.empty()) return std::make_unique<Workspace>();
    auto ws = std::move(idle_.back());
    idle_.pop_back();
    return ws;
  }
  void release(std::unique_ptr<Workspace> ws) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (idle_.size() < kPoolSize) idle_.push_back(std::move(ws));
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<Workspace>> idle_;
};

}  // namespace birnn::detail
