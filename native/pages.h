// Large zero-filled buffers straight from the OS: the kernel's work buffers, and (through
// birnn::allocateOutput) the binding's output arrays and input copies. Mapped memory goes back
// to the OS when freed, where glibc would keep it in the arenas of whichever thread freed it.
// Buffers of 2 MiB and more start on a 2 MiB boundary and ask for transparent huge pages: a
// fresh buffer then costs one page fault per 2 MiB instead of one per 4 KiB, which on a VM is
// 2-3 ms per 3 MB (the whole input copy of a W-b64 call, or most of a small model's call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
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

// From this size on, buffers are mapped rather than taken from the C heap.
constexpr std::size_t kMappedBytes = std::size_t(1) << 20;

#if BIRNN_MMAP
constexpr std::size_t kHugePage = std::size_t(2) << 20;
constexpr std::size_t kPage = 4096;

// Zero-filled memory of `bytes` (>= kMappedBytes); throws std::bad_alloc.
inline void* mapPages(std::size_t bytes) {
  const std::size_t length = (bytes + kPage - 1) & ~(kPage - 1);
  const bool huge = length >= kHugePage;
  // Over-map by one huge page, then give back the unaligned head and the tail.
  const std::size_t mapped = huge ? length + kHugePage : length;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  if (!huge) return p;
  const auto base = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t start = (base + kHugePage - 1) & ~(kHugePage - 1);
  if (start > base) munmap(p, start - base);
  if (base + mapped > start + length) munmap(reinterpret_cast<void*>(start + length), base + mapped - start - length);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(start), length, MADV_HUGEPAGE);  // advice only: failure is fine
#endif
  return reinterpret_cast<void*>(start);
}
inline void unmapPages(void* p, std::size_t bytes) {
  munmap(p, (bytes + kPage - 1) & ~(kPage - 1));
}

// Mapped blocks freed by their last owner (a JS array collected, an input copy no longer kept),
// kept for the next allocation of about their size: zeroing memory already mapped costs a memset,
// where fresh pages cost a fault and the OS's own zeroing (on this VM ~0.7 ms per MB, 15% of a
// small model's call). Bounded by bytes, oldest evicted first; trim() gives them all back.
class PageCache {
 public:
  static constexpr std::size_t kMaxBytes = std::size_t(64) << 20;

  static PageCache& instance() {
    static PageCache* cache = new PageCache;  // never destroyed: blocks may be freed at exit
    return *cache;
  }
  // A zeroed block of at least `bytes` (at most twice that, so a small request does not pin a
  // large block); sets `capacity` to its size. Throws std::bad_alloc.
  void* take(std::size_t bytes, std::size_t& capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
        if (it->second >= bytes && it->second <= 2 * bytes) {
          auto [p, size] = *it;
          blocks_.erase(it);
          held_ -= size;
          capacity = size;
          std::memset(p, 0, bytes);
          return p;
        }
      }
    }
    capacity = bytes;
    return mapPages(bytes);
  }
  void give(void* p, std::size_t capacity) {
    std::vector<std::pair<void*, std::size_t>> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (capacity > kMaxBytes / 4) {
        evicted.emplace_back(p, capacity);
      } else {
        blocks_.emplace_back(p, capacity);
        held_ += capacity;
        while (held_ > kMaxBytes) {
          evicted.push_back(blocks_.front());
          held_ -= blocks_.front().second;
          blocks_.pop_front();
        }
      }
    }
    for (auto [q, size] : evicted) unmapPages(q, size);
  }
  void trim() {
    std::deque<std::pair<void*, std::size_t>> freed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      freed.swap(blocks_);
      held_ = 0;
    }
    for (auto [q, size] : freed) unmapPages(q, size);
  }

 private:
  std::mutex mutex_;
  std::deque<std::pair<void*, std::size_t>> blocks_;
  std::size_t held_ = 0;
};
#endif

}  // namespace birnn::detail
