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
// It is also the allocator of async ops' outputs: a block is handed out without a zero fill
// (every output element is written by the op; the poison tests prove it), and freed blocks are
// kept in a small pool keyed by size, so a training loop that drops each step's gradient gets the
// same pages back next step instead of fresh zeroed pages from the kernel. Lent bytes are not
// reported to V8 by the addon: V8 already counts an external ArrayBuffer's bytes in its
// external-memory figure (which paces its GCs) while the buffer lives, as it does a plain
// ArrayBuffer's. Reporting them again (napi_adjust_external_memory) counted every async output
// twice, so GC ran twice as often as the memory called for (measured: lending 32 MiB raised
// V8's figure by 64 MiB; test/default-call.test.ts checks it).
//
// Sync ops' outputs are V8 memory instead (lib/outputs.ts says why); keep_large_frees_warm()
// makes malloc recycle it. The reason, rechecked on node 20: a lent buffer survives every
// scavenge (weak handles: Node's and the Lent's), so only a full GC gives its block back.
// Lending 32 MiB per step with a forced scavenge (gc({type: 'minor'})) after each, V8's
// external-memory figure grew 32, 64, 96, 128 MiB; only its full GCs brought it down.
#pragma once
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace fl::napi {

// A sync op's output is a V8 ArrayBuffer (Buffer.allocUnsafeSlow, so malloc), freed by the
// scavenge after the caller drops it. glibc serves a block of 32 MiB or more with a fresh mmap
// and unmaps it on free, so a loop over such outputs page-faults every page of every output
// (8192 faults for a 256×32768 float32 gradient, more time than the op). Below these sizes glibc
// takes blocks from its heap and keeps freed ones for the next allocation, as it does on its own
// (dynamically) for blocks up to 32 MiB. Process-wide, as glibc's own setting is: freed memory
// up to kTrimBytes stays with the process instead of going back to the kernel at once.
inline void keep_large_frees_warm() {
#if defined(__GLIBC__)
  constexpr int kMmapBytes = 128 << 20;  // blocks up to this come from the heap
  constexpr int kTrimBytes = 256 << 20;  // free memory at the heap top kept, as glibc's 2×
  mallopt(M_MMAP_THRESHOLD, kMmapBytes);
  mallopt(M_TRIM_THRESHOLD, kTrimBytes);
#endif
}

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

  // An ArrayBuffer of `bytes` over `block`, which it keeps alive while JS can reach the buffer.
  // Main thread only (as find and the finalizer).
  Napi::ArrayBuffer lend(Napi::Env env, Block block, size_t bytes) {
    reclaim();
    void* data = block.get();
    auto* lent = new Lent{std::move(block), shared_from_this(), Napi::Reference<Napi::ArrayBuffer>()};
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data, bytes, [](Napi::Env, void* d, Lent* l) {
      l->memory->finalized(d, l);
    }, lent);
    lent->weak = Napi::Weak(ab);
    {
      std::lock_guard<std::mutex> lock(mu_);
      lent_[data] = lent;
    }
    return ab;
  }

  // The block behind the memory of an ArrayBuffer this instance lent, or null for any other.
  Block find(const void* data) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = lent_.find(data);
    return it == lent_.end() ? nullptr : it->second->block;
  }

  // Node runs the finalizer of an external ArrayBuffer on a later turn of the event loop, after
  // the GC that collected it, so calls made before the loop turns would not get those blocks
  // back. Instead, each new lending first takes back the blocks of buffers V8 has already
  // collected (their weak reference is empty): nothing in JS can reach that memory any more.
  // Main thread only.
  void reclaim() {
    std::vector<Block> dropped;  // released outside the lock (their deleter takes it)
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = lent_.begin(); it != lent_.end();) {
      if (it->second->weak.Value().IsEmpty()) {
        dropped.push_back(std::move(it->second->block));
        it = lent_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  struct Lent {
    Block block;  // the buffer's reference; reset once JS can no longer reach the buffer
    std::shared_ptr<HostMemory> memory;
    Napi::Reference<Napi::ArrayBuffer> weak;  // empty once V8 collected the buffer
  };

  void finalized(const void* data, Lent* l) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = lent_.find(data);
      if (it != lent_.end() && it->second == l) lent_.erase(it);  // not reclaimed yet
    }
    delete l;  // drops the buffer's reference, if reclaim() did not; a job in flight may hold another
  }

  static constexpr size_t kAlign = 64;
  // Large blocks start on a 2 MiB boundary, so that transparent huge pages (when the system
  // enables them for every mapping) can back them. No madvise(MADV_HUGEPAGE): with the common
  // defrag=madvise setting it makes each first touch compact memory synchronously (seen here:
  // 300 ms for 32 MiB on a busy machine).
  static constexpr size_t kHuge = size_t(2) << 20;

  static size_t round_up(size_t bytes) { return bytes < kHuge ? (bytes + kAlign - 1) / kAlign * kAlign : (bytes + kHuge - 1) / kHuge * kHuge; }
  static std::align_val_t alignment(size_t bytes) { return std::align_val_t(bytes < kHuge ? kAlign : kHuge); }

  static void* allocate(size_t bytes) {
    void* p = ::operator new(bytes, alignment(bytes));
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

  std::mutex mu_;
  std::unordered_map<const void*, Lent*> lent_;  // by data pointer; a block is lent to one buffer at a time
  std::multimap<size_t, void*> pool_;
  size_t pooled_bytes_ = 0;
};

}  // namespace fl::napi
