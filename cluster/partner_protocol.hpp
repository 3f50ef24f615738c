// What servers and clients say to each other above the channel, for roles and epochs.
//
// Connection hello (the channel's hello application bytes, at most 40):
//   kind u8 ('C' client, 'P' partner, 'W' a client's warm standby) | epoch u64 LE | name (1..31)
// A client's epoch is the newest it has seen for the name (0: none); a server refuses a client
// whose epoch is newer than its own: it has been replaced. A server's accept reply carries its own
// hello with kind 'A' (active) or 'S' (standby, i.e. passive).
//
// A client's epoch is a hint only: a server never adopts an epoch from a client (epochs come
// only from authenticated members: cluster/partner_ping.hpp and replica frames on an
// authenticated member connection, cluster/member_auth.hpp).
// The hello has no version byte: 40 bytes is all the connection private data leaves, and a name
// of 31 bytes fills it. Partners' liveness pings are UDP datagrams (cluster/partner_ping.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "transport/status.hpp"

namespace viaduct::cluster {

enum class HelloKind : std::uint8_t {
  kClient = 'C',
  kPartner = 'P',
  kActive = 'A',   // accept reply from the active
  kStandby = 'S',  // accept reply from a passive
  kWarm = 'W',     // a client's warm standby connection to the passive (served once it takes over)
};

struct Hello {
  HelloKind kind = HelloKind::kClient;
  std::uint64_t epoch = 0;
  std::string name;
};
inline constexpr std::size_t kMaxServiceNameBytes = 31;

std::vector<std::byte> encode_hello_app(const Hello& hello);
Result<Hello> decode_hello_app(std::span<const std::byte> bytes);

// Replication (a channel request from the active to its passive partner, on a partner channel):
//   magic u32 'VDRP' | version u8 (1) | kind u8 (1 apply, 2 snapshot) | pad u8[2] | epoch u64 LE
//   | sync generation u64 LE | client id u64 LE | seq u64 LE | app status u32 LE
//   | request length u32 LE | request | response (or the state)
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

// Reject reasons a client may see (the reject private data), so it can tell "look again" from
// "wrong server".
inline constexpr char kRejectNotActive[] = "not-active";
inline constexpr char kRejectWrongName[] = "wrong-name";
inline constexpr char kRejectStaleEpoch[] = "stale-epoch";

}  // namespace viaduct::cluster
