// The cache cluster's control datagrams (UDP), version 1: reports to the master, the master's
// probes, leases, map notices and map requests. UDP, like the partners' pings
// (cluster/partner_ping.hpp): no connection a frozen peer can leave half-open, and a dead
// process's port answers "port unreachable" at once, which is how the master tells a killed
// server from a frozen one within a millisecond.
//
// Datagram: 'VDCC' | version u8 (1) | kind u8 | flags u8 | pad u8 | nonce u64 LE | epoch u64 LE
//   | subject length u8 | sender length u8 | pad u16 | body length u32 LE | subject | sender
//   | body | HMAC-SHA256 (32) over everything before
// Members (master, data servers) MAC with the cluster secret; clients with the clients' key
// (ClusterKey::derive("clients")) and set kFlagFromClient. The master refuses anything else: a
// process that holds neither key cannot report, renew, or ask for the map. A client's datagram
// can never do what only a member may (a lease, an ack of a notice).
//
// Exchanges (request -> answer; an answer echoes the request's nonce, so a replayed answer
// proves nothing):
//   kReport      reporter -> master: `subject` seems offline (kFlagBack: seems back). Only ever
//                triggers the master's own verification.      -> kReportAck
//   kProbe       master -> server `subject`: are you there?   -> kProbeAck (epoch: its map's)
//   kLease       server -> master: renew my lease; epoch = my map's; body = nothing, or the
//                database fence above my map epoch that refused me, u64 LE (the master
//                overtakes it: a restarted master whose clock went back) -> kLeaseGrant: epoch =
//                the master's map; body = lease ms u32 | (the signed map when the epochs differ)
//   kNotice      master -> server or watching client: body = the signed map -> kNoticeAck (members)
//   kMapRequest  client or server -> master (kFlagWatch: and push me changes) -> kMap (body =
//                the signed map)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "transport/status.hpp"

namespace viaduct::cluster {
class ClusterKey;
}

namespace viaduct::cluster::cache {

inline constexpr std::uint8_t kControlVersion = 1;
inline constexpr std::size_t kControlHeaderBytes = 32;
inline constexpr std::size_t kMaxControlDatagramBytes = 60 * 1024;

enum class ControlKind : std::uint8_t {
  kReport = 1,
  kReportAck = 2,
  kProbe = 3,
  kProbeAck = 4,
  kLease = 5,
  kLeaseGrant = 6,
  kNotice = 7,
  kNoticeAck = 8,
  kMapRequest = 9,
  kMap = 10,
};

inline constexpr std::uint8_t kFlagFromClient = 1;
inline constexpr std::uint8_t kFlagBack = 2;   // a report: the subject seems back
inline constexpr std::uint8_t kFlagWatch = 4;  // a map request: push me the map's changes

struct ControlMessage {
  ControlKind kind = ControlKind::kReport;
  std::uint8_t flags = 0;
  std::uint64_t nonce = 0;
  std::uint64_t epoch = 0;
  std::string subject;  // the server a report, probe or lease is about
  std::string sender;   // who sends it (a member's id, or a client's name for the logs)
  std::vector<std::byte> body;
};

// Encodes and MACs with `key`; `out` is resized. Errors: a field over its bound.
Status encode_control(const ControlMessage& message, const ClusterKey& key,
                      std::vector<std::byte>& out);
// Whether the datagram says it comes from a client (decides the key to check it with). Does not
// authenticate anything.
bool control_claims_client(std::span<const std::byte> datagram);
// Decodes a datagram whose MAC checks against `key`; anything else is an error.
Result<ControlMessage> decode_control(std::span<const std::byte> datagram, const ClusterKey& key);

std::uint64_t fresh_control_nonce();

}  // namespace viaduct::cluster::cache
