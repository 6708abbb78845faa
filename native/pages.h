// Large buffers straight from the OS: the kernel's work buffers, and (through
// birnn::allocateFloats) the binding's output arrays and input copies. Mapped memory goes back
// to the OS when freed, where glibc would keep it in the arenas of whichever thread freed it.
// Fresh pages are dear (a fault and the OS's zeroing: ~0.65 ms per MB on this VM, whether 4 KiB
// or transparent huge pages, which also vary 10x from run to run), hence PageCache.
#pragma once

#include <cstddef>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define BIRNN_MMAP 1
#else
#define BIRNN_MMAP 0
#endif

namespace birnn::detail {

// From this size on, buffers are mapped rather than taken from the C heap.
constexpr std::size_t kMappedBytes = std::size_t(1) << 20;

#if BIRNN_MMAP
constexpr std::size_t kPage = 4096;
inline std::size_t mappedSize(std::size_t bytes) { return (bytes + kPage - 1) & ~(kPage - 1); }

// Zero-filled memory of mappedSize(bytes) bytes (bytes >= kMappedBytes); throws std::bad_alloc.
inline void* mapPages(std::size_t bytes) {
  void* p = mmap(nullptr, mappedSize(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}
inline void unmapPages(void* p, std::size_t bytes) { munmap(p, mappedSize(bytes)); }

// Mapped blocks freed by their last owner (a JS array collected, an input copy no longer kept),
// kept for the next allocation of about their size: zeroing memory already mapped costs a memset,
// where fresh pages were 15% of a small model's call. Bounded by bytes, oldest evicted first.
// Blocks are given back on the main thread (JS finalizers) and unmapping 13 MB costs ~2 ms, so
// a thread of the cache's own unmaps what is evicted or trimmed (inline if it cannot start).
class PageCache {
 public:
  static constexpr std::size_t kMaxBytes = std::size_t(64) << 20;
  // Larger blocks are not kept: a large idle block would outlast the calls that needed it
  // (test/native/memory.test.ts). Up to this size, a batch's outputs are: W-b64's 13 MB output
  // cost its forward() 17-35 ms of page faults on a VM that traps each first touch of a page
  // (2-core Zen 5 guest: 13 MB of fresh pages 40-50 ms to write, of kept ones 0.2-0.7 ms).
  static constexpr std::size_t kMaxBlock = std::size_t(32) << 20;

  static PageCache& instance() {
    static PageCache* cache = new PageCache;  // never destroyed: blocks may be freed at exit
    return *cache;
  }
  // A block of at least `bytes` (at most twice that, so a small request does not pin a large
  // block), zeroed when `zeroed` (fresh pages are); sets `capacity` to its size. Throws
  // std::bad_alloc.
  void* take(std::size_t bytes, std::size_t& capacity, bool zeroed) {
    void* found = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
        if (it->second >= bytes && it->second <= 2 * bytes) {
          found = it->first;
          capacity = it->second;
          held_ -= it->second;
          blocks_.erase(it);
          break;
        }
      }
    }
    if (found) return zeroed ? std::memset(found, 0, bytes) : found;
    capacity = mappedSize(bytes);
    return mapPages(bytes);
  }
  void give(void* p, std::size_t capacity) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (capacity > kMaxBlock) {
      unmap_.emplace_back(p, capacity);
      reclaim(lock);
      return;
    }
    blocks_.emplace_back(p, capacity);
    held_ += capacity;
    while (held_ > kMaxBytes) {
      held_ -= blocks_.front().second;
      unmap_.push_back(blocks_.front());
      blocks_.pop_front();
    }
    reclaim(lock);
  }
  void trim() {
    std::unique_lock<std::mutex> lock(mutex_);
    unmap_.insert(unmap_.end(), blocks_.begin(), blocks_.end());
    blocks_.clear();
    held_ = 0;
    reclaim(lock);
  }

 private:
  using Block = std::pair<void*, std::size_t>;

  // Hands unmap_ to the reclaiming thread, or unmaps it here when that thread cannot start.
  void reclaim(std::unique_lock<std::mutex>& lock) {
    if (unmap_.empty()) return;
    if (!reclaimer_) {
      try {
        std::thread([this] { reclaimLoop(); }).detach();
        reclaimer_ = true;
      } catch (const std::system_error&) {
        std::vector<Block> now;
        now.swap(unmap_);
        lock.unlock();
        for (auto [q, size] : now) unmapPages(q, size);
        return;
      }
    }
    wake_.notify_one();
  }
  void reclaimLoop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return !unmap_.empty(); });
      std::vector<Block> now;
      now.swap(unmap_);
      lock.unlock();
      for (auto [q, size] : now) unmapPages(q, size);
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Block> blocks_;
  std::vector<Block> unmap_;
  std::size_t held_ = 0;
  bool reclaimer_ = false;
};
#endif

}  // namespace birnn::detail
