#include "failover/server_proof.hpp"

#include <sodium.h>

#include <cstring>

#include "transport/frame.hpp"

namespace viaduct::failover {

namespace {
constexpr char kDomain[] = "viaduct-prove-v1";

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<PublicKey> parse_public_key(std::string_view hex) {
  PublicKey key{};
  if (hex.size() != 2 * key.size()) {
    return Status(Code::kInvalidArgument, "a server public key is 64 hex digits");
  }
  for (std::size_t i = 0; i < key.size(); ++i) {
    int hi = hex_digit(hex[2 * i]);
    int lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Status(Code::kInvalidArgument, "server public key: not hex");
    key[i] = static_cast<std::byte>(hi * 16 + lo);
  }
  return key;
}

std::string public_key_hex(const PublicKey& key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::byte b : key) {
    out += kDigits[std::to_integer<unsigned>(b) >> 4];
    out += kDigits[std::to_integer<unsigned>(b) & 15];
  }
  return out;
}

ProofNonce fresh_proof_nonce() {
  ProofNonce nonce;
  if (sodium_init() < 0) std::abort();  // no entropy source: nothing here can be trusted
  randombytes_buf(nonce.data(), nonce.size());
  return nonce;
}

std::size_t proof_message(std::string_view name, const ProofNonce& nonce, std::uint64_t epoch,
                          std::span<std::byte, 128> out) {
  std::size_t n = 0;
  std::memcpy(out.data(), kDomain, sizeof(kDomain) - 1);
  n += sizeof(kDomain) - 1;
  std::size_t name_bytes = std::min<std::size_t>(name.size(), 64);
  out[n++] = static_cast<std::byte>(name_bytes);
  std::memcpy(out.data() + n, name.data(), name_bytes);
  n += name_bytes;
  std::memcpy(out.data() + n, nonce.data(), nonce.size());
  n += nonce.size();
  transport::store_le<std::uint64_t>(out.data() + n, epoch);
  return n + 8;
}

Result<std::uint64_t> verify_proof(std::span<const std::byte> answer, const PublicKey& key,
                                   std::string_view name, const ProofNonce& nonce) {
  if (answer.size() != kProofAnswerBytes ||
      std::to_integer<std::uint8_t>(answer[0]) != kProofVersion) {
    return Status(Code::kMalformed, "server proof: malformed answer");
  }
  std::uint64_t epoch = transport::load_le<std::uint64_t>(answer.data() + 8);
  std::array<std::byte, 128> message;
  std::size_t n = proof_message(name, nonce, epoch, message);
  if (sodium_init() < 0) std::abort();
  if (crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(answer.data() + 16),
                                  reinterpret_cast<const unsigned char*>(message.data()), n,
                                  reinterpret_cast<const unsigned char*>(key.data())) != 0) {
    return Status(Code::kUnauthenticated,
                  "server proof: bad signature (not a server of '" + std::string(name) + "')");
  }
  return epoch;
}

}  // namespace viaduct::failover
