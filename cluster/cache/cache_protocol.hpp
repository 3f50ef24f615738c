// The data requests of the cache cluster, version 1: what a client (or a data server forwarding
// for one) sends a data server over a transport channel, and the answer. One header for both
// sides, so there is no hand-written mirror to drift.
//
// Request (the channel request's payload; little endian):
//   version u8 (1) | op u8 | flags u8 | type length u8 | key length u16 | pad u16
//   | value length u32 | pad u32 | map epoch u64 | expected version u64 | client id u64 | seq u64
//   | type | key | value
// `map epoch` is the newest cluster map the sender holds (cluster/cache/cluster_map.hpp); a
// server that holds a newer one answers kNotServing with it, so that the client refreshes.
// (client id, seq) name a write: a write retried after a lost answer (to the same server or to
// another one) is recognised by the database row it wrote last and not applied twice.
//
// Answer (the response payload; the channel's app status carries CacheStatus):
//   version u8 (1) | pad u8[7] | map epoch u64 | record version u64 | value (get) or message
//
// A malformed request gets kInvalid with a message and the connection stays open: one bad
// request must not cost a client its other requests in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "cluster/cache/record_store.hpp"
#include "transport/status.hpp"

namespace viaduct::cluster::cache {

inline constexpr std::uint8_t kCacheProtocolVersion = 1;
inline constexpr std::size_t kCacheRequestHeaderBytes = 48;
inline constexpr std::size_t kCacheAnswerHeaderBytes = 24;

enum class CacheOp : std::uint8_t {
  kGet = 1,
  kPut = 2,
  kDelete = 3,
  kPing = 4,   // "are you there, and serving?": the client's probe of a server in failover mode
  kProve = 5,  // value = 16-byte nonce; answer value = a failover/server_proof.hpp answer
};

inline constexpr std::uint8_t kCacheFlagExpected = 1;   // apply only at `expected version`
inline constexpr std::uint8_t kCacheFlagForwarded = 2;  // sent by a data server: never forward it

// The answer's status (the channel's app status).
enum class CacheStatus : std::uint32_t {
  kOk = 0,
  kNotFound = 1,         // never written, or deleted; the record version is still given
  kVersionMismatch = 2,  // a conditional write found another version (given)
  kNotServing = 3,       // this server may not serve the type now: refresh the map and re-route
  kUnknownType = 4,      // no server of the cluster owns the type
  kInvalid = 5,          // malformed or out of bounds; the message says what
  kDatabase = 6,         // the database failed; the message says how (the write did not apply)
  kBusy = 7,             // too many requests held here; retry later
};
[[nodiscard]] std::string_view cache_status_name(CacheStatus status);

struct CacheRequest {
  CacheOp op = CacheOp::kGet;
  std::uint8_t flags = 0;
  std::uint64_t map_epoch = 0;
  std::uint64_t expected_version = 0;
  std::uint64_t client_id = 0;
  std::uint64_t seq = 0;
  std::string_view type;
  std::span<const std::byte> key;
  std::span<const std::byte> value;
  [[nodiscard]] bool is_write() const { return op == CacheOp::kPut || op == CacheOp::kDelete; }
};

struct CacheAnswer {
  std::uint64_t map_epoch = 0;
  std::uint64_t record_version = 0;
  std::span<const std::byte> value;
};

// Appends nothing on error; `out` is cleared first (its capacity is reused).
Status encode_cache_request(const CacheRequest& request, std::vector<std::byte>& out);
// The spans point into `bytes`. Checks the sizes against the record store's bounds.
Result<CacheRequest> decode_cache_request(std::span<const std::byte> bytes);

void encode_cache_answer(std::uint64_t map_epoch, std::uint64_t record_version,
                         std::span<const std::byte> value, std::vector<std::byte>& out);
Result<CacheAnswer> decode_cache_answer(std::span<const std::byte> bytes);

inline std::span<const std::byte> as_bytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

}  // namespace viaduct::cluster::cache
