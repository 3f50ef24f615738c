// Trust between cluster members, and the servers' proof to clients.
//
// Every member of a cluster (the two partners today; the master and the data servers next) holds
// the cluster secret: 32 random bytes in a key file (`viaduct keygen FILE`, mode 0600). From it:
//   - members authenticate each other: HMAC-SHA256 over every partner datagram
//     (cluster/partner_ping.hpp) and a mutual challenge-response on every member connection
//     (below), so only a member can ping, replicate, send a snapshot or announce an epoch;
//   - each service name gets its own Ed25519 key pair, derived as
//     seed = BLAKE2b-256(key = secret, "viaduct-service-key-v1" | name); servers sign
//     failover/server_proof.hpp answers with it, and clients pin its public key
//     (`viaduct key public --cluster-key FILE --name NAME`). Clients never hold the secret.
//
// Member connection handshake (channel requests on a connection whose hello kind is 'P'; version
// byte 1), bound to that connection by two fresh nonces:
//   connector -> acceptor: 'VDAU' | version 1 | step 1 | pad[2] | nonce_c (32)
//   acceptor  -> connector (answer): nonce_s (32) | HMAC(secret, "acc" | name | nonce_c | nonce_s)
//   connector -> acceptor: 'VDAU' | version 1 | step 2 | pad[2] | HMAC(secret, "con" | name |
//                          nonce_c | nonce_s)
//   acceptor answers app status 0: the connection is authenticated from now on.
// Anything else first, a bad MAC, or a step out of order: the acceptor closes the connection.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "failover/server_proof.hpp"
#include "transport/channel.hpp"

namespace viaduct::cluster {

inline constexpr std::size_t kClusterKeyBytes = 32;
inline constexpr std::size_t kMacBytes = 32;
using Mac = std::array<std::byte, kMacBytes>;

// The handshake's messages (see above): a header of 8 bytes, then a nonce or a MAC.
inline constexpr std::size_t kMemberNonceBytes = 32;
inline constexpr std::size_t kMemberStep1Bytes = 8 + kMemberNonceBytes;
inline constexpr std::size_t kMemberAnswer1Bytes = kMemberNonceBytes + kMacBytes;
inline constexpr std::size_t kMemberStep2Bytes = 8 + kMacBytes;
using MemberNonce = std::array<std::byte, kMemberNonceBytes>;

class ClusterKey {
 public:
  // A key file: 64 hex digits (and optional white space). Refused when readable by others.
  static Result<ClusterKey> load(const std::string& path);
  // Writes a fresh key file (mode 0600); fails if it exists.
  static Status generate(const std::string& path);
  static ClusterKey from_bytes(std::span<const std::byte, kClusterKeyBytes> bytes);

  [[nodiscard]] Mac mac(std::span<const std::byte> message) const;
  [[nodiscard]] bool verify(std::span<const std::byte> message,
                            std::span<const std::byte> mac) const;
  // The Ed25519 key pair of service `name`.
  [[nodiscard]] failover::PublicKey service_public_key(std::string_view name) const;
  // A key for another purpose derived from this one: BLAKE2b-256(key = secret,
  // "viaduct-derived-key-v1" | purpose). The cache cluster's clients hold derive("clients"): it
  // lets them report servers to the master, and lets no one who lacks it, without giving them
  // the members' secret.
  [[nodiscard]] ClusterKey derive(std::string_view purpose) const;
  // Writes this key to a fresh file (mode 0600), in the format load() reads; fails if it exists.
  [[nodiscard]] Status save(const std::string& path) const;
  // An Ed25519 signature by the key pair of `name` (the one service_public_key(name) gives).
  [[nodiscard]] std::array<std::byte, failover::kSignatureBytes> sign(
      std::string_view name, std::span<const std::byte> message) const;
  // Signs a proof answer (failover/server_proof.hpp) for `name` at `epoch`.
  void sign_proof(std::string_view name, const failover::ProofNonce& nonce, std::uint64_t epoch,
                  std::span<std::byte, failover::kProofAnswerBytes> answer) const;

 private:
  void derive_service_key(std::string_view name) const;
  std::array<std::byte, kClusterKeyBytes> secret_{};
  // The last derived key pair (derivation costs a hash and a scalar multiplication).
  mutable std::string derived_for_;
  mutable std::array<unsigned char, 32> derived_pk_{};
  mutable std::array<unsigned char, 64> derived_sk_{};
};

// Checks an Ed25519 signature (ClusterKey::sign) against a public key.
bool verify_signature(const failover::PublicKey& key, std::span<const std::byte> message,
                      std::span<const std::byte> signature);

// The member handshake, on the connector's side: runs it over `channel` (synchronously, within
// timeout_ms). Ok: both sides proved they hold the secret.
Status authenticate_member_connection(transport::Channel& channel, const ClusterKey& key,
                                      std::string_view name, int timeout_ms);

// The connector's two messages, without I/O (the fuzz target and tests drive them): step 1 for
// `nonce_c`, and step 2 from the acceptor's answer to step 1, which is checked first (an answer of
// the wrong size or with a MAC that does not prove the key: kUnauthenticated).
std::array<std::byte, kMemberStep1Bytes> member_handshake_step1(const MemberNonce& nonce_c);
Result<std::array<std::byte, kMemberStep2Bytes>> member_handshake_step2(
    std::span<const std::byte> answer1, const ClusterKey& key, std::string_view name,
    const MemberNonce& nonce_c);

// The acceptor's side, one per member connection: feed it each request on the connection until
// authenticated() is true. handle() answers the request itself; returns false when the peer
// failed (the caller closes the connection).
class MemberHandshake {
 public:
  static bool is_handshake(std::span<const std::byte> request);
  bool handle(transport::Channel& channel, std::uint64_t request_id,
              std::span<const std::byte> request, const ClusterKey& key, std::string_view name);
  // handle() without the channel: the answer to send (valid until the next call), or nullopt
  // when the peer failed.
  std::optional<std::span<const std::byte>> answer(std::span<const std::byte> request,
                                                   const ClusterKey& key, std::string_view name);
  [[nodiscard]] bool authenticated() const { return authenticated_; }

 private:
  MemberNonce nonce_c_{};
  MemberNonce nonce_s_{};
  std::array<std::byte, kMemberAnswer1Bytes> answer_{};
  bool challenged_ = false;
  bool authenticated_ = false;
};

}  // namespace viaduct::cluster
