// What partners say to each other above the channel (replication). The hello and the
// application statuses that clients see too are in failover/service_hello.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "failover/service_hello.hpp"
#include "transport/status.hpp"

namespace viaduct::cluster {

using failover::decode_hello_app;
using failover::encode_hello_app;
using failover::Hello;
using failover::HelloKind;
using failover::kAppStatusBadRequest;
using failover::kAppStatusNotActive;
using failover::kAppStatusStaleEpoch;
using failover::kMaxServiceNameBytes;
using failover::kRejectNotActive;
using failover::kRejectStaleEpoch;
using failover::kRejectWrongName;

// Replication (a channel request from the active to its passive partner, on a partner channel):
//   magic u32 'VDRP' | version u8 (1) | kind u8 (1 apply, 2 snapshot) | pad u8[2] | epoch u64 LE
//   | sync generation u64 LE | client id u64 LE | seq u64 LE | app status u32 LE
//   | request length u32 LE | request | response
// A snapshot carries the application's state as its response and the active's reply cache
// (cluster/reply_cache.hpp, serialize) as its request.
// Accepted only on a member connection that passed the handshake (cluster/member_auth.hpp).
// The sync generation numbers the active's replication streams: a snapshot of generation G
// makes the passive in sync as of G (cluster/partner_link.hpp tells the active so).
// The passive answers status 0 once it has applied it, or kAppStatusStaleEpoch with its own
// epoch (u64 LE) when the sender has been replaced: the sender must step down, not answer.
enum class ReplicaKind : std::uint8_t { kApply = 1, kSnapshot = 2 };
struct Replica {
  ReplicaKind kind = ReplicaKind::kApply;
  std::uint64_t epoch = 0;
  std::uint64_t sync_gen = 0;
  std::uint64_t client_id = 0;
  std::uint64_t seq = 0;
  std::uint32_t app_status = 0;
  std::span<const std::byte> request;
  std::span<const std::byte> response;  // the state, for a snapshot
};
inline constexpr std::uint8_t kReplicaVersion = 1;
inline constexpr std::size_t kReplicaHeaderBytes = 48;
// Appends to `out` (cleared first; its capacity is reused: no allocation once warm).
void encode_replica(const Replica& replica, std::vector<std::byte>& out);
// The spans point into `bytes`.
Result<Replica> decode_replica(std::span<const std::byte> bytes);
inline bool is_replica(std::span<const std::byte> bytes) {
  return bytes.size() >= 4 && bytes[0] == std::byte{'V'} && bytes[1] == std::byte{'D'} &&
         bytes[2] == std::byte{'R'} && bytes[3] == std::byte{'P'};
}

}  // namespace viaduct::cluster
