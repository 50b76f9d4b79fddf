// Host memory owned by the addon and lent to JS as external ArrayBuffers.
//
// Why: a plain ArrayBuffer's memory belongs to V8. Once JS detaches it (transfers it to a
// worker, structuredClone with `transfer`), V8 frees it whenever the new owner lets go, and no
// napi reference can keep it alive; an async job that still points into it would read or write
// freed memory. Memory from here is a reference-counted Block instead: the ArrayBuffer holds
// one reference (its finalizer drops it, whoever ends up owning the buffer), and every async
// job that uses the memory holds another (napi/job.h). The memory goes back only when the
// last one is dropped.
//
// It is also the fast allocator of op outputs: a block is handed out without a zero fill (every
// output element is written by the op; the poison tests prove it), and freed blocks are kept in
// a small pool keyed by size, so a training loop that drops each step's gradient gets the same
// pages back next step instead of fresh zeroed pages from the kernel.
#pragma once
#include <napi.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#ifdef __linux__
#include <sys/mman.h>
#endif

namespace fl::napi {

class HostMemory : public std::enable_shared_from_this<HostMemory> {
 public:
  using Block = std::shared_ptr<void>;

  // The most bytes of freed blocks kept for reuse (per addon instance, so per worker_thread).
  static constexpr size_t kPoolBytes = size_t(256) << 20;

  HostMemory() = default;
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;
  ~HostMemory() {
    for (auto& [bytes, p] : pool_) release(p, bytes);
  }

  // A block of at least `bytes` (uninitialised). Thread-safe: the last reference to a block may
  // drop on any thread (a pool thread finishing a job, a finalizer).
  Block acquire(size_t bytes) {
    bytes = round_up(bytes);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pool_.find(bytes);
      if (it != pool_.end()) {
        p = it->second;
        pool_.erase(it);
        pooled_bytes_ -= bytes;
      }
    }
    if (!p) p = allocate(bytes);
    return Block(p, [self = shared_from_this(), bytes](void* q) { self->give_back(q, bytes); });
  }

  // An ArrayBuffer of `bytes` over `block`, which it keeps alive until V8 frees the buffer.
  Napi::ArrayBuffer lend(Napi::Env env, Block block, size_t bytes) {
    void* data = block.get();
    {
      std::lock_guard<std::mutex> lock(mu_);
      lent_[data] = block;
    }
    auto* hold = new Lent{std::move(block), shared_from_this()};
    return Napi::ArrayBuffer::New(env, data, bytes, [](Napi::Env, void* d, Lent* l) {
      l->memory->forget(d);
      delete l;  // drops the buffer's reference; a job in flight may still hold another
    }, hold);
  }

  // The block behind the memory of an ArrayBuffer this instance lent, or null for any other.
  Block find(const void* data) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = lent_.find(data);
    return it == lent_.end() ? nullptr : it->second.lock();
  }

 private:
  struct Lent {
    Block block;
    std::shared_ptr<HostMemory> memory;
  };
  static constexpr size_t kAlign = 64;
  // Large blocks start on a 2 MiB boundary so that the kernel can back them with huge pages.
  static constexpr size_t kHuge = size_t(2) << 20;

  static size_t round_up(size_t bytes) { return bytes < kHuge ? (bytes + kAlign - 1) / kAlign * kAlign : (bytes + kHuge - 1) / kHuge * kHuge; }
  static std::align_val_t alignment(size_t bytes) { return std::align_val_t(bytes < kHuge ? kAlign : kHuge); }

  static void* allocate(size_t bytes) {
    void* p = ::operator new(bytes, alignment(bytes));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= kHuge) madvise(p, bytes, MADV_HUGEPAGE);  // a hint: fewer page faults on first touch
#endif
    return p;
  }
  static void release(void* p, size_t bytes) { ::operator delete(p, alignment(bytes)); }

  void give_back(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pooled_bytes_ + bytes <= kPoolBytes) {
        pool_.emplace(bytes, p);
        pooled_bytes_ += bytes;
        return;
      }
    }
    release(p, bytes);
  }

  void forget(const void* data) {
    std::lock_guard<std::mutex> lock(mu_);
    lent_.erase(data);  // the block is not handed out again before this: the buffer held it
  }

  std::mutex mu_;
  std::unordered_map<const void*, std::weak_ptr<void>> lent_;
  std::multimap<size_t, void*> pool_;
  size_t pooled_bytes_ = 0;
};

}  // namespace fl::napi
