#include "cluster/partner_ping.hpp"

#include <cstring>

#include "cluster/member_auth.hpp"
#include "transport/frame.hpp"

namespace viaduct::cluster {

namespace {
constexpr std::byte kMagic[4] = {std::byte{'V'}, std::byte{'D'}, std::byte{'P'}, std::byte{'G'}};
constexpr std::size_t kSignedBytes = kPartnerDatagramBytes - kMacBytes;
constexpr std::size_t kNameField = 32;
static_assert(kSignedBytes == 8 + 24 + kNameField);
}  // namespace

void encode_partner_datagram(const PartnerDatagram& d, const ClusterKey& key,
                             std::span<std::byte, kPartnerDatagramBytes> out) {
  std::memset(out.data(), 0, out.size());
  std::memcpy(out.data(), kMagic, 4);
  out[4] = std::byte{kPartnerPingVersion};
  out[5] = static_cast<std::byte>(d.type);
  out[6] = std::byte{d.flags};
  std::size_t name_bytes = std::min(d.name.size(), kNameField);
  out[7] = static_cast<std::byte>(name_bytes);
  transport::store_le<std::uint64_t>(out.data() + 8, d.epoch);
  transport::store_le<std::uint64_t>(out.data() + 16, d.nonce);
  transport::store_le<std::uint64_t>(out.data() + 24, d.sync_gen);
  std::memcpy(out.data() + 32, d.name.data(), name_bytes);
  Mac mac = key.mac({out.data(), kSignedBytes});
  std::memcpy(out.data() + kSignedBytes, mac.data(), kMacBytes);
}

Result<PartnerDatagram> decode_partner_datagram(std::span<const std::byte> bytes,
                                                const ClusterKey& key) {
  if (bytes.size() != kPartnerDatagramBytes || std::memcmp(bytes.data(), kMagic, 4) != 0) {
    return Status(Code::kMalformed, "partner datagram: not one");
  }
  if (std::to_integer<std::uint8_t>(bytes[4]) != kPartnerPingVersion) {
    return Status(Code::kMalformed, "partner datagram: unknown version");
  }
  // Authenticate before looking at anything else.
  if (!key.verify(bytes.first(kSignedBytes), bytes.subspan(kSignedBytes))) {
    return Status(Code::kUnauthenticated, "partner datagram: bad MAC");
  }
  PartnerDatagram d;
  auto type = std::to_integer<std::uint8_t>(bytes[5]);
  if (type != 1 && type != 2) return Status(Code::kMalformed, "partner datagram: unknown type");
  d.type = static_cast<PartnerMessage>(type);
  d.flags = std::to_integer<std::uint8_t>(bytes[6]);
  std::size_t name_bytes = std::to_integer<std::size_t>(bytes[7]);
  if (name_bytes == 0 || name_bytes > kNameField) {
    return Status(Code::kMalformed, "partner datagram: bad name length");
  }
  d.epoch = transport::load_le<std::uint64_t>(bytes.data() + 8);
  d.nonce = transport::load_le<std::uint64_t>(bytes.data() + 16);
  d.sync_gen = transport::load_le<std::uint64_t>(bytes.data() + 24);
  d.name.assign(reinterpret_cast<const char*>(bytes.data() + 32), name_bytes);
  return d;
}

}  // namespace viaduct::cluster
