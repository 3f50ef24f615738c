// failover::decode_request_header (client id and sequence number in front of every session
// request) on arbitrary bytes. Property: it accepts exactly the inputs of 16 bytes or more, and
// re-encodes to their first 16 bytes.
#include <array>

#include "failover/request_header.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace viaduct::failover;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  RequestHeader h;
  bool ok = decode_request_header(in, &h);
  FUZZ_CHECK(ok == (size >= kRequestHeaderBytes));
  if (!ok) return 0;

  std::array<std::byte, kRequestHeaderBytes> out{};
  encode_request_header(h, out.data());
  FUZZ_CHECK(viaduct::fuzz::same_bytes(out, in.first(kRequestHeaderBytes)));
  return 0;
}
