// A server's proof that it serves a name, and at which epoch: the client's "verify that the server
// really answers to that name" step, made cryptographic.
//
// Every server of a service holds the service's Ed25519 key pair; clients pin its public key. A
// client sends a fresh nonce in a control request (failover/request_header.hpp, op kControlProve);
// the active server answers with its epoch and a signature over
//   "viaduct-prove-v1" | name length u8 | name | nonce (16) | epoch u64 LE
// A lookup answer, a hello or an address is only a hint: a session adopts a server (and its
// epoch) only once this proof checks out. A client holds no secret, so it can never impersonate a
// server; a forged UDP answer can at worst make a client try a server that cannot prove itself.
//
// Wire (answer payload, version 1): version u8 (1) | pad u8[7] | epoch u64 LE | signature (64).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "transport/status.hpp"

namespace viaduct::failover {

inline constexpr std::uint8_t kProofVersion = 1;
inline constexpr std::size_t kProofNonceBytes = 16;
inline constexpr std::size_t kPublicKeyBytes = 32;
inline constexpr std::size_t kSignatureBytes = 64;
inline constexpr std::size_t kProofAnswerBytes = 16 + kSignatureBytes;
static_assert(kProofAnswerBytes == 80);

using PublicKey = std::array<std::byte, kPublicKeyBytes>;
using ProofNonce = std::array<std::byte, kProofNonceBytes>;

// "64 hex digits" -> key.
Result<PublicKey> parse_public_key(std::string_view hex);
std::string public_key_hex(const PublicKey& key);

ProofNonce fresh_proof_nonce();

// The exact bytes that are signed (also used by the server side to sign).
std::size_t proof_message(std::string_view name, const ProofNonce& nonce, std::uint64_t epoch,
                          std::span<std::byte, 128> out);

// Checks an answer to kControlProve; returns the proven epoch.
Result<std::uint64_t> verify_proof(std::span<const std::byte> answer, const PublicKey& key,
                                   std::string_view name, const ProofNonce& nonce);

}  // namespace viaduct::failover
