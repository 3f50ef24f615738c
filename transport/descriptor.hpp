// Work descriptors and completions, shaped after VIA's descriptor: a control segment, an optional
// remote address segment (RDMA) and data segments. Fixed-size, so posting never allocates.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "transport/memory_region.hpp"

namespace viaduct::transport {

enum class Opcode : std::uint8_t { kSend, kRecv, kRdmaWrite, kRdmaRead };
std::string_view opcode_name(Opcode op);

inline constexpr std::size_t kMaxDataSegments = 4;  // libfabric tcp's iov_limit; verbs max_sge >= 4

struct DataSegment {
  void* addr = nullptr;
  std::uint32_t length = 0;
  const MemoryRegion* region = nullptr;  // must contain [addr, addr+length)
};

struct Descriptor {
  // Control segment.
  Opcode opcode = Opcode::kSend;
  std::uint64_t context = 0;  // handed back in the Completion (wr_id)
  // Copy the data out at post time (fi_inject / IBV_SEND_INLINE): the buffer is reusable at once
  // and no completion is reported. Only for sends no larger than VirtualInterface::inline_limit().
  bool inline_data = false;
  // Remote address segment (RDMA write/read only).
  RemoteSegment remote;
  // Data segments.
  std::array<DataSegment, kMaxDataSegments> segments{};
  std::uint8_t segment_count = 0;

  [[nodiscard]] std::size_t total_length() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < segment_count; ++i) n += segments[i].length;
    return n;
  }
  static Descriptor single(Opcode op, std::uint64_t context, void* addr, std::uint32_t length,
                           const MemoryRegion* region) {
    Descriptor d;
    d.opcode = op;
    d.context = context;
    d.segments[0] = {addr, length, region};
    d.segment_count = 1;
    return d;
  }
};

enum class CompletionStatus : std::uint8_t {
  kSuccess,
  kFlushed,  // the VI went to the error state; outstanding descriptors come back flushed
  kError,    // this descriptor failed (retry exceeded, remote access error, ...)
};

struct Completion {
  std::uint64_t context = 0;
  Opcode opcode = Opcode::kSend;
  CompletionStatus status = CompletionStatus::kSuccess;
  std::uint32_t byte_count = 0;  // bytes received (kRecv)
  int provider_error = 0;        // ibv_wc_status / fi errno, for diagnostics
};

}  // namespace viaduct::transport
