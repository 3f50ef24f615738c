// A registered memory region: memory the NIC may read and write, pinned until the object dies.
#pragma once

#include <cstddef>
#include <cstdint>

namespace viaduct::transport {

enum class Access : std::uint8_t {
  kLocal = 0,             // the local NIC reads (sends) and writes (receives)
  kRemoteRead = 1 << 0,   // the peer may RDMA-read it
  kRemoteWrite = 1 << 1,  // the peer may RDMA-write it
  kRemote = kRemoteRead | kRemoteWrite,
};
constexpr Access operator|(Access a, Access b) {
  return static_cast<Access>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has(Access set, Access bit) {
  return (static_cast<unsigned>(set) & static_cast<unsigned>(bit)) != 0;
}

// What a peer needs to name a piece of this region in an RDMA operation.
struct RemoteSegment {
  std::uint64_t addr = 0;  // virtual address (verbs, FI_MR_VIRT_ADDR) or offset into the region
  std::uint64_t key = 0;   // rkey / fi_mr_key
};

// Back ends subclass it to own the registration handle (ibv_mr, fid_mr); destruction deregisters.
class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  [[nodiscard]] std::byte* data() const { return data_; }
  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] bool contains(const void* p, std::size_t n) const {
    auto* b = static_cast<const std::byte*>(p);
    return b >= data_ && n <= size_ && b <= data_ + (size_ - n);
  }
  // Local handle the back end hands to the NIC (fi_mr_desc, or the verbs lkey widened).
  [[nodiscard]] void* local_desc() const { return local_desc_; }
  [[nodiscard]] std::uint32_t lkey() const { return lkey_; }
  // Remote name of `p` (inside this region) for the peer's RDMA read/write.
  [[nodiscard]] RemoteSegment remote(const void* p) const {
    auto offset = static_cast<std::uint64_t>(static_cast<const std::byte*>(p) - data_);
    return {virtual_addressing_ ? reinterpret_cast<std::uint64_t>(p) : offset, remote_key_};
  }

 protected:
  MemoryRegion(std::byte* data, std::size_t size) : data_(data), size_(size) {}
  std::byte* data_;
  std::size_t size_;
  void* local_desc_ = nullptr;
  std::uint32_t lkey_ = 0;
  std::uint64_t remote_key_ = 0;
  bool virtual_addressing_ = true;
};

}  // namespace viaduct::transport
