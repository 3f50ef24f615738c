#include "transport/buffer_pool.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

namespace viaduct::transport {

namespace {
constexpr std::size_t kPageBytes = 4096;
}

AlignedBytes allocate_aligned(std::size_t bytes) {
  std::size_t rounded = (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  auto* p =
      static_cast<std::byte*>(std::aligned_alloc(kPageBytes, rounded == 0 ? kPageBytes : rounded));
  // Not zeroed: every byte is written before it is sent, and zeroing a 64 MiB rendezvous buffer
  // would double its first-touch cost.
  return AlignedBytes(p);
}

Result<std::unique_ptr<BufferSlab>> BufferSlab::create(Domain& domain, std::size_t slot_bytes,
                                                       std::uint32_t count, Access access) {
  std::unique_ptr<BufferSlab> slab(new BufferSlab());  // private constructor
  slab->slot_bytes_ = (slot_bytes + 63) / 64 * 64;     // cache-line aligned slots
  slab->count_ = count;
  std::size_t total = slab->slot_bytes_ * count;
  slab->memory_ = allocate_aligned(total);
  if (!slab->memory_) return Status(Code::kResource, "out of memory for buffer slab");
  auto region = domain.register_memory(slab->memory_.get(), total, access);
  if (!region) return region.status();
  slab->region_ = std::move(region.value());
  slab->free_.reserve(count);
  for (std::uint32_t i = count; i > 0; --i) slab->free_.push_back(i - 1);
  return slab;
}

RendezvousPool::~RendezvousPool() {
  for (auto& b : buffers_) drop(b);
}

void RendezvousPool::drop(Buffer& b) {
  if (b.capacity == 0) return;
  if (!b.busy) idle_ -= b.capacity;
  registered_ -= b.capacity;
  budget_->release(b.capacity);
  b.region.reset();
  b.memory.reset();
  b.capacity = 0;
  b.busy = false;
}

void RendezvousPool::trim_idle(std::size_t keep_bytes) {
  // Largest first: the fewest deregistrations to get under the mark.
  while (idle_ > keep_bytes) {
    Buffer* largest = nullptr;
    for (auto& b : buffers_) {
      if (b.capacity != 0 && !b.busy && (largest == nullptr || b.capacity > largest->capacity)) {
        largest = &b;
      }
    }
    if (largest == nullptr) return;
    drop(*largest);
  }
}

void RendezvousPool::release(std::uint32_t handle) {
  Buffer& b = buffers_[handle];
  if (!b.busy) return;
  b.busy = false;
  idle_ += b.capacity;
  if (idle_ > max_idle_bytes_) trim_idle(max_idle_bytes_);
}

Result<std::uint32_t> RendezvousPool::acquire(std::size_t bytes) {
  std::size_t capacity = std::bit_ceil(std::max<std::size_t>(bytes, 64 * 1024));
  // A size class above the pool's bound would make a message that fits unstageable: fall back
  // to the exact (page-rounded) size.
  if (capacity > max_bytes_) capacity = (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  if (capacity > max_bytes_ || capacity > budget_->limit_bytes()) {
    return Status(Code::kResource,
                  "rendezvous of " + std::to_string(bytes) +
                      " bytes over the staging budget (channel_max_staging_bytes " +
                      std::to_string(max_bytes_) + ", domain_max_staging_bytes " +
                      std::to_string(budget_->limit_bytes()) + ")");
  }
  std::uint32_t empty = static_cast<std::uint32_t>(buffers_.size());
  for (std::uint32_t i = 0; i < buffers_.size(); ++i) {
    Buffer& b = buffers_[i];
    if (b.capacity == capacity && !b.busy) {
      b.busy = true;
      idle_ -= capacity;
      return i;
    }
    if (b.capacity == 0 && empty == buffers_.size()) empty = i;
  }
  // A new buffer. Idle buffers of other classes give way before a budget says no.
  if (registered_ + capacity > max_bytes_) trim_idle(0);
  if (registered_ + capacity > max_bytes_) {
    return Status(Code::kWouldBlock, "channel_max_staging_bytes (" + std::to_string(max_bytes_) +
                                         ") in use by rendezvous transfers");
  }
  if (!budget_->try_reserve(capacity)) {
    trim_idle(0);
    if (!budget_->try_reserve(capacity)) {
      return Status(Code::kWouldBlock, "domain_max_staging_bytes (" +
                                           std::to_string(budget_->limit_bytes()) +
                                           ") in use by this domain's channels");
    }
  }
  Buffer b;
  b.capacity = capacity;
  b.memory = allocate_aligned(capacity);
  if (!b.memory) {
    budget_->release(capacity);
    return Status(Code::kResource, "out of memory for a rendezvous buffer");
  }
  auto region = domain_->register_memory(b.memory.get(), capacity, access_);
  if (!region) {
    budget_->release(capacity);
    return region.status();
  }
  b.region = std::move(region.value());
  b.busy = true;
  registered_ += capacity;
  if (empty == buffers_.size()) {
    buffers_.push_back(std::move(b));
  } else {
    buffers_[empty] = std::move(b);
  }
  return empty;
}

}  // namespace viaduct::transport
