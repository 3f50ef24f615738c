// The partners' liveness protocol: authenticated UDP datagrams between the two instances' partner
// links (cluster/partner_link.hpp), on the UDP port with the number of each instance's transport
// listen port, same host. UDP, not a channel: a datagram needs no connection that a frozen peer
// can leave half-open, a link thread can answer it at real-time priority while the serving loop is
// starved, and a dead process's port answers ICMP "port unreachable" (ECONNREFUSED on the next
// receive) while a frozen one's does not.
//
// Datagram, version 1, 96 bytes:
//   'VDPG' | version u8 (1) | type u8 (1 ping, 2 pong) | flags u8 | name length u8
//   | epoch u64 LE | nonce u64 LE | sync generation u64 LE | name (32, zero-padded)
//   | HMAC-SHA256(cluster secret, the 64 bytes before) (32)
// A ping carries a fresh nonce; a pong echoes the nonce of the ping it answers. Only a pong that
// echoes one of our recent nonces counts as hearing the partner: a recorded datagram, replayed,
// proves nothing and changes nothing.
// Flags: active (the sender is active at `epoch`); in-sync (a passive holds everything its active
// acknowledged, as of replication generation `sync generation`); drop-sync (an active tells its
// passive to consider itself out of sync as of `sync generation`: it is about to serve alone).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "transport/status.hpp"

namespace viaduct::cluster {

class ClusterKey;

inline constexpr std::uint8_t kPartnerPingVersion = 1;
inline constexpr std::size_t kPartnerDatagramBytes = 96;

enum class PartnerMessage : std::uint8_t { kPing = 1, kPong = 2 };
inline constexpr std::uint8_t kPartnerFlagActive = 1;
inline constexpr std::uint8_t kPartnerFlagInSync = 2;
inline constexpr std::uint8_t kPartnerFlagDropSync = 4;

struct PartnerDatagram {
  PartnerMessage type = PartnerMessage::kPing;
  std::uint8_t flags = 0;
  std::uint64_t epoch = 0;
  std::uint64_t nonce = 0;
  std::uint64_t sync_gen = 0;
  std::string name;
};

void encode_partner_datagram(const PartnerDatagram& d, const ClusterKey& key,
                             std::span<std::byte, kPartnerDatagramBytes> out);
// Malformed, a wrong version, or a bad MAC: an error (the datagram must be ignored).
Result<PartnerDatagram> decode_partner_datagram(std::span<const std::byte> bytes,
                                                const ClusterKey& key);

}  // namespace viaduct::cluster
