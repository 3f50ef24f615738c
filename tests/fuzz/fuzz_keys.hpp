// The fixed cluster key and nonces of the crypto fuzz targets, shared with make_seeds.cpp so that
// the seed corpora hold answers these keys really made (the paths past the MAC or signature check).
#pragma once

#include <array>
#include <cstddef>

#include "cluster/member_auth.hpp"
#include "failover/server_proof.hpp"

namespace viaduct::fuzz {

inline const cluster::ClusterKey& fixed_cluster_key() {
  static const cluster::ClusterKey key = [] {
    std::array<std::byte, cluster::kClusterKeyBytes> bytes{};
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 7 + 1);
    return cluster::ClusterKey::from_bytes(bytes);
  }();
  return key;
}

// The connector's nonce in fuzz_member_auth.
inline cluster::MemberNonce fixed_member_nonce() {
  cluster::MemberNonce nonce{};
  for (std::size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<std::byte>(0xc0 + i);
  return nonce;
}

// The client's nonce in fuzz_server_proof.
inline failover::ProofNonce fixed_proof_nonce() {
  failover::ProofNonce nonce{};
  for (std::size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<std::byte>(0x50 + i);
  return nonce;
}

inline constexpr std::string_view kFuzzServiceName = "ORDERS";

}  // namespace viaduct::fuzz
