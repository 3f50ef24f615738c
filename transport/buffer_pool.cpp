#include "transport/buffer_pool.hpp"

#include <bit>
#include <cstring>

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

Result<std::uint32_t> RendezvousPool::acquire(std::size_t bytes) {
  std::size_t capacity = std::bit_ceil(std::max<std::size_t>(bytes, 64 * 1024));
  for (std::uint32_t i = 0; i < buffers_.size(); ++i) {
    if (!buffers_[i].busy && buffers_[i].capacity == capacity) {
      buffers_[i].busy = true;
      return i;
    }
  }
  Buffer b;
  b.capacity = capacity;
  b.memory = allocate_aligned(capacity);
  if (!b.memory) return Status(Code::kResource, "out of memory for a rendezvous buffer");
  auto region = domain_->register_memory(b.memory.get(), capacity, access_);
  if (!region) return region.status();
  b.region = std::move(region.value());
  b.busy = true;
  buffers_.push_back(std::move(b));
  return static_cast<std::uint32_t>(buffers_.size() - 1);
}

std::size_t RendezvousPool::registered_bytes() const {
  std::size_t n = 0;
  for (const auto& b : buffers_) n += b.capacity;
  return n;
}

}  // namespace viaduct::transport
