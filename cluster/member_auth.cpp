#include "cluster/member_auth.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

#include "transport/frame.hpp"

namespace viaduct::cluster {

namespace {

void sodium_or_die() {
  if (sodium_init() < 0) std::abort();  // no entropy source: nothing here can be trusted
}

const unsigned char* u8(const std::byte* p) {
  return reinterpret_cast<const unsigned char*>(p);
}
unsigned char* u8(std::byte* p) {
  return reinterpret_cast<unsigned char*>(p);
}

constexpr std::byte kMagic[4] = {std::byte{'V'}, std::byte{'D'}, std::byte{'A'}, std::byte{'U'}};
constexpr std::uint8_t kHandshakeVersion = 1;

// "acc"/"con" | name length | name | nonce_c | nonce_s: what each side MACs.
Mac transcript_mac(const ClusterKey& key, const char* role, std::string_view name,
                   std::span<const std::byte, 32> nonce_c, std::span<const std::byte, 32> nonce_s) {
  std::array<std::byte, 3 + 1 + 255 + 64> buf{};
  std::size_t n = 0;
  std::memcpy(buf.data(), role, 3);
  n += 3;
  std::size_t name_bytes = std::min<std::size_t>(name.size(), 255);
  buf[n++] = static_cast<std::byte>(name_bytes);
  std::memcpy(buf.data() + n, name.data(), name_bytes);
  n += name_bytes;
  std::memcpy(buf.data() + n, nonce_c.data(), 32);
  n += 32;
  std::memcpy(buf.data() + n, nonce_s.data(), 32);
  n += 32;
  return key.mac({buf.data(), n});
}

void put_header(std::byte* out, std::uint8_t step) {
  std::memcpy(out, kMagic, 4);
  out[4] = std::byte{kHandshakeVersion};
  out[5] = std::byte{step};
  out[6] = out[7] = std::byte{0};
}

}  // namespace

Result<ClusterKey> ClusterKey::load(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status(Code::kInvalidArgument, "cluster key file " + path + ": " + std::strerror(errno));
  }
  if ((st.st_mode & 077) != 0) {
    return Status(Code::kInvalidArgument,
                  "cluster key file " + path + " is readable by others: chmod 600 it");
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string hex;
  for (char c : text.str()) {
    if (!std::isspace(static_cast<unsigned char>(c))) hex += c;
  }
  std::array<std::byte, kClusterKeyBytes> bytes{};
  std::size_t got = 0;
  if (hex.size() != 2 * kClusterKeyBytes ||
      sodium_hex2bin(u8(bytes.data()), bytes.size(), hex.data(), hex.size(), nullptr, &got,
                     nullptr) != 0 ||
      got != kClusterKeyBytes) {
    return Status(Code::kInvalidArgument,
                  "cluster key file " + path + ": expected 64 hex digits (viaduct keygen FILE)");
  }
  return from_bytes(bytes);
}

Status ClusterKey::generate(const std::string& path) {
  sodium_or_die();
  std::array<std::byte, kClusterKeyBytes> bytes;
  randombytes_buf(bytes.data(), bytes.size());
  Status saved = from_bytes(bytes).save(path);
  sodium_memzero(bytes.data(), bytes.size());
  return saved;
}

Status ClusterKey::save(const std::string& path) const {
  const auto& bytes = secret_;
  char hex[2 * kClusterKeyBytes + 1];
  sodium_bin2hex(hex, sizeof(hex), u8(bytes.data()), bytes.size());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status(Code::kInvalidArgument, path + ": " + std::strerror(errno));
  std::string line = std::string(hex) + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  sodium_memzero(hex, sizeof(hex));
  if (!ok) return Status(Code::kResource, path + ": write failed");
  return Status();
}

ClusterKey ClusterKey::from_bytes(std::span<const std::byte, kClusterKeyBytes> bytes) {
  sodium_or_die();
  ClusterKey key;
  std::memcpy(key.secret_.data(), bytes.data(), kClusterKeyBytes);
  return key;
}

Mac ClusterKey::mac(std::span<const std::byte> message) const {
  Mac out;
  crypto_auth_hmacsha256(u8(out.data()), u8(message.data()), message.size(), u8(secret_.data()));
  return out;
}

bool ClusterKey::verify(std::span<const std::byte> message, std::span<const std::byte> mac) const {
  if (mac.size() != kMacBytes) return false;
  return crypto_auth_hmacsha256_verify(u8(mac.data()), u8(message.data()), message.size(),
                                       u8(secret_.data())) == 0;
}

void ClusterKey::derive_service_key(std::string_view name) const {
  if (derived_for_ == name && !derived_for_.empty()) return;
  static constexpr char kDomain[] = "viaduct-service-key-v1";
  std::array<unsigned char, 32> seed;
  crypto_generichash_state state;
  crypto_generichash_init(&state, u8(secret_.data()), secret_.size(), seed.size());
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(kDomain),
                            sizeof(kDomain) - 1);
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(name.data()),
                            name.size());
  crypto_generichash_final(&state, seed.data(), seed.size());
  crypto_sign_seed_keypair(derived_pk_.data(), derived_sk_.data(), seed.data());
  sodium_memzero(seed.data(), seed.size());
  derived_for_ = std::string(name);
}

ClusterKey ClusterKey::derive(std::string_view purpose) const {
  static constexpr char kDomain[] = "viaduct-derived-key-v1";
  std::array<std::byte, kClusterKeyBytes> derived;
  crypto_generichash_state state;
  crypto_generichash_init(&state, u8(secret_.data()), secret_.size(), derived.size());
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(kDomain),
                            sizeof(kDomain) - 1);
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(purpose.data()),
                            purpose.size());
  crypto_generichash_final(&state, u8(derived.data()), derived.size());
  ClusterKey key = from_bytes(derived);
  sodium_memzero(derived.data(), derived.size());
  return key;
}

std::array<std::byte, failover::kSignatureBytes> ClusterKey::sign(
    std::string_view name, std::span<const std::byte> message) const {
  derive_service_key(name);
  std::array<std::byte, failover::kSignatureBytes> signature;
  crypto_sign_detached(u8(signature.data()), nullptr, u8(message.data()), message.size(),
                       derived_sk_.data());
  return signature;
}

bool verify_signature(const failover::PublicKey& key, std::span<const std::byte> message,
                      std::span<const std::byte> signature) {
  if (signature.size() != failover::kSignatureBytes) return false;
  sodium_or_die();
  return crypto_sign_verify_detached(u8(signature.data()), u8(message.data()), message.size(),
                                     u8(key.data())) == 0;
}

failover::PublicKey ClusterKey::service_public_key(std::string_view name) const {
  derive_service_key(name);
  failover::PublicKey pk;
  std::memcpy(pk.data(), derived_pk_.data(), pk.size());
  return pk;
}

void ClusterKey::sign_proof(std::string_view name, const failover::ProofNonce& nonce,
                            std::uint64_t epoch,
                            std::span<std::byte, failover::kProofAnswerBytes> answer) const {
  derive_service_key(name);
  std::array<std::byte, 128> message;
  std::size_t n = failover::proof_message(name, nonce, epoch, message);
  std::memset(answer.data(), 0, 16);
  answer[0] = std::byte{failover::kProofVersion};
  transport::store_le<std::uint64_t>(answer.data() + 8, epoch);
  crypto_sign_detached(u8(answer.data() + 16), nullptr, u8(message.data()), n, derived_sk_.data());
}

std::array<std::byte, kMemberStep1Bytes> member_handshake_step1(const MemberNonce& nonce_c) {
  std::array<std::byte, kMemberStep1Bytes> step1;
  put_header(step1.data(), 1);
  std::memcpy(step1.data() + 8, nonce_c.data(), nonce_c.size());
  return step1;
}

Result<std::array<std::byte, kMemberStep2Bytes>> member_handshake_step2(
    std::span<const std::byte> answer1, const ClusterKey& key, std::string_view name,
    const MemberNonce& nonce_c) {
  if (answer1.size() != kMemberAnswer1Bytes) {
    return Status(Code::kUnauthenticated, "member handshake: refused by the peer");
  }
  std::span<const std::byte, kMemberNonceBytes> nonce_s(answer1.data(), kMemberNonceBytes);
  Mac expected = transcript_mac(key, "acc", name, nonce_c, nonce_s);
  if (sodium_memcmp(expected.data(), answer1.data() + kMemberNonceBytes, kMacBytes) != 0) {
    return Status(Code::kUnauthenticated,
                  "member handshake: the peer does not hold the cluster key");
  }
  std::array<std::byte, kMemberStep2Bytes> step2;
  put_header(step2.data(), 2);
  Mac mine = transcript_mac(key, "con", name, nonce_c, nonce_s);
  std::memcpy(step2.data() + 8, mine.data(), kMacBytes);
  return step2;
}

Status authenticate_member_connection(transport::Channel& channel, const ClusterKey& key,
                                      std::string_view name, int timeout_ms) {
  MemberNonce nonce_c;
  randombytes_buf(nonce_c.data(), nonce_c.size());
  auto step1 = member_handshake_step1(nonce_c);
  std::array<std::byte, kMemberAnswer1Bytes> answer;
  std::uint32_t app_status = 0;
  auto got = channel.call(step1, answer, timeout_ms, &app_status);
  if (!got) return got.status();
  if (app_status != 0 || got.value() > answer.size()) {
    return Status(Code::kUnauthenticated, "member handshake: refused by the peer");
  }
  auto step2 = member_handshake_step2({answer.data(), got.value()}, key, name, nonce_c);
  if (!step2) return step2.status();
  std::array<std::byte, 8> ok;
  got = channel.call(step2.value(), ok, timeout_ms, &app_status);
  if (!got) return got.status();
  if (app_status != 0) return Status(Code::kUnauthenticated, "member handshake: refused");
  return Status();
}

bool MemberHandshake::is_handshake(std::span<const std::byte> request) {
  return request.size() >= 8 && std::memcmp(request.data(), kMagic, 4) == 0;
}

bool MemberHandshake::handle(transport::Channel& channel, std::uint64_t request_id,
                             std::span<const std::byte> request, const ClusterKey& key,
                             std::string_view name) {
  auto reply = answer(request, key, name);
  if (!reply) return false;
  (void)channel.respond(request_id, *reply);
  return true;
}

std::optional<std::span<const std::byte>> MemberHandshake::answer(
    std::span<const std::byte> request, const ClusterKey& key, std::string_view name) {
  if (!is_handshake(request) || std::to_integer<std::uint8_t>(request[4]) != kHandshakeVersion) {
    return std::nullopt;
  }
  std::uint8_t step = std::to_integer<std::uint8_t>(request[5]);
  if (step == 1 && !challenged_ && request.size() == kMemberStep1Bytes) {
    std::memcpy(nonce_c_.data(), request.data() + 8, kMemberNonceBytes);
    randombytes_buf(nonce_s_.data(), nonce_s_.size());
    challenged_ = true;
    std::memcpy(answer_.data(), nonce_s_.data(), kMemberNonceBytes);
    Mac mac = transcript_mac(key, "acc", name, nonce_c_, nonce_s_);
    std::memcpy(answer_.data() + kMemberNonceBytes, mac.data(), kMacBytes);
    return std::span<const std::byte>(answer_);
  }
  if (step == 2 && challenged_ && !authenticated_ && request.size() == kMemberStep2Bytes) {
    Mac expected = transcript_mac(key, "con", name, nonce_c_, nonce_s_);
    if (sodium_memcmp(expected.data(), request.data() + 8, kMacBytes) != 0) return std::nullopt;
    authenticated_ = true;
    return std::span<const std::byte>();
  }
  return std::nullopt;
}

}  // namespace viaduct::cluster
