// failover::ssrp::decode_request (what the lookup responder reads from any UDP sender) on
// arbitrary bytes. Property: a request that decodes re-encodes to exactly the input.
#include "failover/ssrp.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace viaduct::failover::ssrp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  auto request = decode_request(in);
  if (!request.is_ok()) return 0;

  FUZZ_CHECK(request.value().instance_name.size() <= kMaxInstanceNameBytes);
  auto out = encode_request(request.value());
  FUZZ_CHECK(viaduct::fuzz::same_bytes(out, in));
  return 0;
}
