// What servers and clients say to each other above the channel, for roles and epochs.
//
// Connection hello (the channel's hello application bytes, at most 40):
//   kind u8 ('C' client, 'P' partner, 'W' a client's warm standby) | epoch u64 LE | name (1..31)
// A client's epoch is the newest it has seen for the name (0: none); a server refuses a client
// whose epoch is newer than its own: it has been replaced. A server's accept reply carries its own
// hello with kind 'A' (active) or 'S' (standby, i.e. passive).
//
// Partner ping (a channel request between partners, 16 bytes): magic u32 'VDPP' | role u8 |
// pad u8[3] | epoch u64 LE. The answer has the same shape: the partner's role and epoch.
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

enum class WireRole : std::uint8_t { kPassive = 0, kActive = 1 };
struct Ping {
  WireRole role = WireRole::kPassive;
  std::uint64_t epoch = 0;
};
inline constexpr std::size_t kPingBytes = 16;
void encode_ping(const Ping& ping, std::span<std::byte, kPingBytes> out);
Result<Ping> decode_ping(std::span<const std::byte> bytes);

// Replication (a channel request from the active to its passive partner, on a partner channel):
//   magic u32 'VDRP' | kind u8 (1 apply, 2 snapshot) | pad u8[3] | epoch u64 LE | client id u64 LE
//   | seq u64 LE | app status u32 LE | request length u32 LE | request | response (or the state)
// The passive answers status 0 once it has applied it, or kAppStatusStaleEpoch with its own
// epoch (u64 LE) when the sender has been replaced: the sender must step down, not answer.
enum class ReplicaKind : std::uint8_t { kApply = 1, kSnapshot = 2 };
struct Replica {
  ReplicaKind kind = ReplicaKind::kApply;
  std::uint64_t epoch = 0;
  std::uint64_t client_id = 0;
  std::uint64_t seq = 0;
  std::uint32_t app_status = 0;
  std::span<const std::byte> request;
  std::span<const std::byte> response;  // the state, for a snapshot
};
inline constexpr std::size_t kReplicaHeaderBytes = 40;
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
