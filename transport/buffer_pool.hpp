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
// busy); in a steady state a transfer allocates nothing. `max_idle_bytes` caps what is kept.
class RendezvousPool {
 public:
  RendezvousPool(Domain& domain, Access access) : domain_(&domain), access_(access) {}
  // Returns a handle; the buffer holds at least `bytes`.
  Result<std::uint32_t> acquire(std::size_t bytes);
  void release(std::uint32_t handle) { buffers_[handle].busy = false; }
  [[nodiscard]] std::byte* data(std::uint32_t handle) const {
    return buffers_[handle].memory.get();
  }
  [[nodiscard]] const MemoryRegion& region(std::uint32_t handle) const {
    return *buffers_[handle].region;
  }
  [[nodiscard]] std::size_t registered_bytes() const;

 private:
  struct Buffer {
    AlignedBytes memory;
    std::unique_ptr<MemoryRegion> region;
    std::size_t capacity = 0;
    bool busy = false;
  };
  Domain* domain_;
  Access access_;
  std::vector<Buffer> buffers_;
};

}  // namespace viaduct::transport
