// Pre-registered buffers: registration costs a syscall and pins pages, so the channel registers
// its memory up front and hands slots out by index on the hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "transport/domain.hpp"
#include "transport/memory_region.hpp"
#include "transport/staging_budget.hpp"

namespace viaduct::transport {

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<std::byte, FreeDeleter>;
// Page-aligned allocation, not zeroed (aligned_alloc needs a multiple of the alignment).
AlignedBytes allocate_aligned(std::size_t bytes);

// `count` equal slots of `slot_bytes` in one registered region, with a LIFO free list (LIFO keeps
// the hottest slot in cache).
class BufferSlab {
 public:
  static Result<std::unique_ptr<BufferSlab>> create(Domain& domain, std::size_t slot_bytes,
                                                    std::uint32_t count, Access access);
  [[nodiscard]] std::byte* slot(std::uint32_t index) const {
    return memory_.get() + static_cast<std::size_t>(index) * slot_bytes_;
  }
  [[nodiscard]] const MemoryRegion& region() const { return *region_; }
  [[nodiscard]] std::size_t slot_bytes() const { return slot_bytes_; }
  [[nodiscard]] std::uint32_t count() const { return count_; }
  [[nodiscard]] std::uint32_t available() const { return static_cast<std::uint32_t>(free_.size()); }
  bool acquire(std::uint32_t* index) {
    if (free_.empty()) return false;
    *index = free_.back();
    free_.pop_back();
    return true;
  }
  void release(std::uint32_t index) { free_.push_back(index); }

 private:
  BufferSlab() = default;
  AlignedBytes memory_;
  std::unique_ptr<MemoryRegion> region_;  // declared after memory_: deregistered before freed
  std::size_t slot_bytes_ = 0;
  std::uint32_t count_ = 0;
  std::vector<std::uint32_t> free_;  // capacity reserved up front: push/pop never allocate
};

// Large registered buffers for rendezvous transfers, kept and reused by power-of-two size class.
// A class is allocated and registered the first time it is needed (or when all its buffers are
// busy); in a steady state a transfer allocates nothing.
//
// Bounded, because peers decide what is staged: the pool registers at most `max_bytes` (busy and
// idle together), and every byte it registers is also reserved from the domain-wide `budget`.
// Idle buffers are kept for reuse up to `max_idle_bytes`; a buffer released beyond that is
// deregistered and freed at once. acquire() fails with kWouldBlock when a budget is spent by
// buffers in use: the caller waits for a release (or a peer's rendezvous_done) and retries.
class RendezvousPool {
 public:
  RendezvousPool(Domain& domain, Access access, StagingBudget& budget, std::size_t max_bytes,
                 std::size_t max_idle_bytes)
      : domain_(&domain),
        access_(access),
        budget_(&budget),
        max_bytes_(max_bytes),
        max_idle_bytes_(max_idle_bytes) {}
  ~RendezvousPool();
  RendezvousPool(const RendezvousPool&) = delete;
  RendezvousPool& operator=(const RendezvousPool&) = delete;

  // Returns a handle; the buffer holds at least `bytes`. kWouldBlock: over a budget for now;
  // kResource: `bytes` could never fit, or the memory could not be had.
  Result<std::uint32_t> acquire(std::size_t bytes);
  void release(std::uint32_t handle);
  [[nodiscard]] std::byte* data(std::uint32_t handle) const {
    return buffers_[handle].memory.get();
  }
  [[nodiscard]] const MemoryRegion& region(std::uint32_t handle) const {
    return *buffers_[handle].region;
  }
  // Deregisters idle buffers until at most `keep_bytes` of them remain.
  void trim_idle(std::size_t keep_bytes);
  [[nodiscard]] std::size_t registered_bytes() const { return registered_; }
  [[nodiscard]] std::size_t idle_bytes() const { return idle_; }
  [[nodiscard]] std::size_t max_bytes() const { return max_bytes_; }
  [[nodiscard]] const StagingBudget& budget() const { return *budget_; }

 private:
  struct Buffer {
    AlignedBytes memory;
    std::unique_ptr<MemoryRegion> region;  // after memory: deregistered before freed
    std::size_t capacity = 0;              // 0: an empty entry, free for the next buffer
    bool busy = false;
  };
  void drop(Buffer& b);

  Domain* domain_;
  Access access_;
  StagingBudget* budget_;
  std::size_t max_bytes_;
  std::size_t max_idle_bytes_;
  std::size_t registered_ = 0;
  std::size_t idle_ = 0;
  std::vector<Buffer> buffers_;
};

}  // namespace viaduct::transport
