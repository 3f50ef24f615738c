// cluster::decode_hello_app (kind, epoch and service name in the channel hello's application
// bytes) on arbitrary bytes. Property: what decodes re-encodes to exactly the input.
#include "cluster/partner_protocol.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace viaduct::cluster;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  auto hello = decode_hello_app(in);
  if (!hello.is_ok()) return 0;

  FUZZ_CHECK(!hello.value().name.empty());
  FUZZ_CHECK(hello.value().name.size() <= kMaxServiceNameBytes);
  auto out = encode_hello_app(hello.value());
  FUZZ_CHECK(viaduct::fuzz::same_bytes(out, in));

  auto again = decode_hello_app(out);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(again.value().kind == hello.value().kind);
  FUZZ_CHECK(again.value().epoch == hello.value().epoch);
  FUZZ_CHECK(again.value().name == hello.value().name);
  return 0;
}
