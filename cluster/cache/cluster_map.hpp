// The cluster map: which data server owns which types, how the servers form failover groups,
// which of them are offline, and the map epoch that grows with every change. The master
// (cluster/cache/master.hpp) is its only author; it signs every copy it sends with its Ed25519
// key (derived from the cluster secret, name "m:" + master id), so that clients, which hold no
// secret, believe a map only from the master, and a replayed old map loses to its newer epoch.
//
// A server's state:
//   online     it serves its types (from its cache, under a lease: cluster/cache/lease.hpp);
//   offline    the master verified it does not answer; the group's failover server serves its
//              types, caching them only temporarily; `generation` grew when it was marked;
//   returning  it answered again; the other members drop what they cached of its types and stop
//              serving them; only once every one did (or its lease ran out) does the master mark
//              it online: the barrier that keeps any reader from seeing a value older than the
//              last acknowledged write while ownership moves back.
//
// Wire (version 1): 'VDMP' | version u8 | pad u8 | server count u16 | epoch u64
//   | per server: state u8 | type count u8 | pad u16 | generation u64 | key (32) | id, group,
//   listen, control
//     (each u8 length + bytes) | types (each u8 length + bytes)
//   | signature (64) over everything before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "failover/server_proof.hpp"
#include "transport/status.hpp"

namespace viaduct::cluster {
class ClusterKey;
}

namespace viaduct::cluster::cache {

inline constexpr std::size_t kMaxMapServers = 64;
inline constexpr std::size_t kMaxTypesPerServer = 64;
inline constexpr std::size_t kMaxIdBytes = 29;  // "c:" + id is a proof name (at most 31 bytes)
inline constexpr std::size_t kMaxMapBytes = 48 * 1024;

enum class ServerState : std::uint8_t { kOnline = 0, kOffline = 1, kReturning = 2 };
[[nodiscard]] std::string_view server_state_name(ServerState state);

struct MapServer {
  std::string id;
  std::string group;
  std::string listen;   // transport address ("ofi+tcp://127.0.0.1:7610")
  std::string control;  // UDP HOST:PORT: the master's probes, leases and notices
  std::vector<std::string> types;
  ServerState state = ServerState::kOnline;
  std::uint64_t generation = 0;  // grows each time the server is marked offline
  // The Ed25519 public key the server proves itself with (ClusterKey::service_public_key of
  // server_key_name(id)): what lets a client, holding no secret, check it reached the server.
  failover::PublicKey key{};
};

struct ClusterMap {
  std::uint64_t epoch = 0;
  std::vector<MapServer> servers;

  [[nodiscard]] const MapServer* find(std::string_view id) const;
  [[nodiscard]] MapServer* find(std::string_view id);
  // The server that owns `type` (whatever its state), or nullptr: an unknown type.
  [[nodiscard]] const MapServer* owner_of(std::string_view type) const;
  // Who serves `owner`'s types while it is not online: the next online server after it in its
  // group, in the map's order (wrapping), or nullptr when none is.
  [[nodiscard]] const MapServer* failover_for(const MapServer& owner) const;
  // The members of `group`.
  [[nodiscard]] std::vector<const MapServer*> group_of(std::string_view group) const;
  // The bounds and rules: ids unique and short, every type owned once, groups of two or more.
  [[nodiscard]] Status check() const;
};

// The name of the key pair a data server proves itself with, and the master's.
[[nodiscard]] std::string server_key_name(std::string_view id);
[[nodiscard]] std::string master_key_name(std::string_view id);

// Encodes and signs (the master's side).
std::vector<std::byte> encode_signed_map(const ClusterMap& map, const ClusterKey& key,
                                         std::string_view master_id);
// Decodes a map whose signature checks against the master's public key; anything else is an
// error (kUnauthenticated for a bad signature, kMalformed for bad bytes).
Result<ClusterMap> decode_signed_map(std::span<const std::byte> bytes,
                                     const failover::PublicKey& master_key);

}  // namespace viaduct::cluster::cache
