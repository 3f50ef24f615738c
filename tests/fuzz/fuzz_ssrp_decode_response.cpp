// failover::ssrp::decode_response (what the lookup client reads from any UDP sender) on arbitrary
// bytes. The parser is tolerant (unknown keys, odd versions), so its output need not re-encode;
// property: whenever encode_response accepts the decoded records, decoding that encoding gives the
// same records back.
#include "failover/ssrp.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace viaduct::failover::ssrp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  auto records = decode_response(in);
  if (!records.is_ok()) return 0;

  for (const auto& rec : records.value()) FUZZ_CHECK(!rec.instance_name.empty());
  auto out = encode_response(records.value(), kMaxExRespBytes);
  if (!out.is_ok()) return 0;
  auto again = decode_response(out.value());
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(again.value() == records.value());
  return 0;
}
