// Every request a failover session sends starts with (client id, sequence number), so a server can
// recognise a request re-sent after a failover and answer it from its reply cache.
#pragma once

#include <cstdint>
#include <span>

#include "transport/frame.hpp"

namespace viaduct::failover {

inline constexpr std::size_t kRequestHeaderBytes = 16;

// Sequence 0 is never an application request (a session counts from 1): it marks the session's
// own control request, answered by the server itself and never replayed. Payload: one op byte.
inline constexpr std::uint64_t kControlSeq = 0;
// Answer: the server's partner's transport address as text (empty: it has none).
inline constexpr std::byte kControlPartnerAddress{1};
// Answer: the server's epoch, u64 LE — only an active answers (a passive says not-active), so a
// session standing by at the partner learns from this alone that the partner took over.
inline constexpr std::byte kControlEpoch{2};
// Followed by a 16-byte nonce. Answer: the active's signed proof that it serves the name at its
// epoch (failover/server_proof.hpp); a passive says not-active.
inline constexpr std::byte kControlProve{3};

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
