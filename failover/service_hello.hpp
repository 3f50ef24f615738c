// The service hello: what a client (or a partner) and a server say when a connection opens, and
// the application statuses a server answers with. One header for both sides (failover/ is the
// lower module: cluster/ includes it), so there is no hand-written mirror to drift.
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

namespace viaduct::failover {

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

// Application statuses of a service server's own answers (the application's own are below these).
// Not (or no longer) the active one: look the name up again.
inline constexpr std::uint32_t kAppStatusNotActive = 0xFFFF0001u;
// A request without the 16-byte (client id, sequence) header, or not for this connection.
inline constexpr std::uint32_t kAppStatusBadRequest = 0xFFFF0002u;
// A replica refused by a partner holding a newer epoch (its epoch follows, u64 LE): the sender
// has been replaced and must step down without answering.
inline constexpr std::uint32_t kAppStatusStaleEpoch = 0xFFFF0003u;

// Reject reasons a client may see (the reject private data), so it can tell "look again" from
// "wrong server".
inline constexpr char kRejectNotActive[] = "not-active";
inline constexpr char kRejectWrongName[] = "wrong-name";
inline constexpr char kRejectStaleEpoch[] = "stale-epoch";

}  // namespace viaduct::failover
