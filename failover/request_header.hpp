// Every request a failover session sends starts with (client id, sequence number), so a server can
// recognise a request re-sent after a failover and answer it from its reply cache.
#pragma once

#include <cstdint>
#include <span>

#include "transport/frame.hpp"

namespace viaduct::failover {

inline constexpr std::size_t kRequestHeaderBytes = 16;

struct RequestHeader {
  std::uint64_t client_id = 0;
  std::uint64_t seq = 0;
};

inline void encode_request_header(const RequestHeader& h, std::byte* out) {
  transport::store_le<std::uint64_t>(out, h.client_id);
  transport::store_le<std::uint64_t>(out + 8, h.seq);
}

inline bool decode_request_header(std::span<const std::byte> request, RequestHeader* h) {
  if (request.size() < kRequestHeaderBytes) return false;
  h->client_id = transport::load_le<std::uint64_t>(request.data());
  h->seq = transport::load_le<std::uint64_t>(request.data() + 8);
  return true;
}

}  // namespace viaduct::failover
