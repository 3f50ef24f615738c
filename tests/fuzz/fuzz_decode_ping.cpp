// cluster::decode_ping (the partner ping) on arbitrary bytes. Property: decode(encode(x)) == x, and
// the encoding matches the input except the three pad bytes, which decode ignores.
#include <array>

#include "cluster/partner_protocol.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace viaduct::cluster;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  auto ping = decode_ping(in);
  if (!ping.is_ok()) return 0;

  FUZZ_CHECK(size == kPingBytes);
  std::array<std::byte, kPingBytes> out{};
  encode_ping(ping.value(), out);
  FUZZ_CHECK(viaduct::fuzz::same_bytes(std::span(out).first(5), in.first(5)));
  FUZZ_CHECK(viaduct::fuzz::same_bytes(std::span(out).subspan(8), in.subspan(8)));

  auto again = decode_ping(out);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(again.value().role == ping.value().role);
  FUZZ_CHECK(again.value().epoch == ping.value().epoch);
  return 0;
}
