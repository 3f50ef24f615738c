#include "cluster/cache/control_protocol.hpp"

#include <sodium.h>

#include <cstring>

#include "cluster/member_auth.hpp"
#include "transport/frame.hpp"

namespace viaduct::cluster::cache {

using transport::load_le;
using transport::store_le;

namespace {
constexpr std::byte kMagic[4] = {std::byte{'V'}, std::byte{'D'}, std::byte{'C'}, std::byte{'C'}};
}

Status encode_control(const ControlMessage& m, const ClusterKey& key, std::vector<std::byte>& out) {
  if (m.subject.size() > 255 || m.sender.size() > 255 ||
      kControlHeaderBytes + m.subject.size() + m.sender.size() + m.body.size() + kMacBytes >
          kMaxControlDatagramBytes) {
    return Status(Code::kInvalidArgument, "control datagram: a field is too long");
  }
  out.assign(kControlHeaderBytes, std::byte{0});
  std::memcpy(out.data(), kMagic, 4);
  out[4] = std::byte{kControlVersion};
  out[5] = static_cast<std::byte>(m.kind);
  out[6] = std::byte{m.flags};
  store_le<std::uint64_t>(out.data() + 8, m.nonce);
  store_le<std::uint64_t>(out.data() + 16, m.epoch);
  out[24] = static_cast<std::byte>(m.subject.size());
  out[25] = static_cast<std::byte>(m.sender.size());
  store_le<std::uint32_t>(out.data() + 28, static_cast<std::uint32_t>(m.body.size()));
  auto append = [&out](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  };
  append(m.subject.data(), m.subject.size());
  append(m.sender.data(), m.sender.size());
  append(m.body.data(), m.body.size());
  Mac mac = key.mac(out);
  append(mac.data(), mac.size());
  return Status::ok();
}

bool control_claims_client(std::span<const std::byte> datagram) {
  return datagram.size() > 6 && (std::to_integer<std::uint8_t>(datagram[6]) & kFlagFromClient);
}

Result<ControlMessage> decode_control(std::span<const std::byte> d, const ClusterKey& key) {
  if (d.size() < kControlHeaderBytes + kMacBytes || d.size() > kMaxControlDatagramBytes) {
    return Status(Code::kMalformed, "control datagram: bad length");
  }
  if (std::memcmp(d.data(), kMagic, 4) != 0 ||
      std::to_integer<std::uint8_t>(d[4]) != kControlVersion) {
    return Status(Code::kMalformed, "control datagram: bad magic or version");
  }
  auto signed_part = d.first(d.size() - kMacBytes);
  if (!key.verify(signed_part, d.last(kMacBytes))) {
    return Status(Code::kUnauthenticated, "control datagram: bad MAC");
  }
  ControlMessage m;
  auto kind = std::to_integer<std::uint8_t>(d[5]);
  if (kind < 1 || kind > 10) return Status(Code::kMalformed, "control datagram: unknown kind");
  m.kind = static_cast<ControlKind>(kind);
  m.flags = std::to_integer<std::uint8_t>(d[6]);
  m.nonce = load_le<std::uint64_t>(d.data() + 8);
  m.epoch = load_le<std::uint64_t>(d.data() + 16);
  std::size_t subject = std::to_integer<std::size_t>(d[24]);
  std::size_t sender = std::to_integer<std::size_t>(d[25]);
  std::size_t body = load_le<std::uint32_t>(d.data() + 28);
  if (kControlHeaderBytes + subject + sender + body != signed_part.size()) {
    return Status(Code::kMalformed, "control datagram: lengths do not add up");
  }
  const char* p = reinterpret_cast<const char*>(d.data() + kControlHeaderBytes);
  m.subject.assign(p, subject);
  m.sender.assign(p + subject, sender);
  const auto* b = d.data() + kControlHeaderBytes + subject + sender;
  m.body.assign(b, b + body);
  return m;
}

std::uint64_t fresh_control_nonce() {
  std::uint64_t nonce = 0;
  randombytes_buf(&nonce, sizeof(nonce));
  return nonce;
}

}  // namespace viaduct::cluster::cache
