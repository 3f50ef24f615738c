// cluster::decode_partner_datagram (the partners' UDP liveness datagram) on arbitrary bytes, under
// a fixed cluster key. Property: whatever decodes re-encodes to the same bytes (the MAC covers
// every byte, so a decoded datagram is exactly what a key holder made).
#include <array>

#include "cluster/member_auth.hpp"
#include "cluster/partner_ping.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace viaduct::cluster;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ClusterKey key = [] {
    std::array<std::byte, kClusterKeyBytes> bytes{};
    bytes.fill(std::byte{0x42});
    return ClusterKey::from_bytes(bytes);
  }();
  auto in = viaduct::fuzz::bytes_of(data, size);
  auto d = decode_partner_datagram(in, key);
  if (!d.is_ok()) return 0;
  FUZZ_CHECK(size == kPartnerDatagramBytes);
  std::array<std::byte, kPartnerDatagramBytes> out{};
  encode_partner_datagram(d.value(), key, out);
  FUZZ_CHECK(viaduct::fuzz::same_bytes(out, in));
  return 0;
}
