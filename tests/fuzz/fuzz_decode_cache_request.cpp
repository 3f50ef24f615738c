// cluster::cache::decode_cache_request (a data request from any client) and decode_cache_answer on
// arbitrary bytes. Properties: whatever decodes re-encodes to the same bytes, within the record
// store's bounds; nothing else crashes or reads out of bounds.
#include "cluster/cache/cache_protocol.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace viaduct::cluster::cache;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  (void)decode_cache_answer(in);
  auto r = decode_cache_request(in);
  if (!r.is_ok()) return 0;
  const CacheRequest& request = r.value();
  FUZZ_CHECK(request.value.size() <= kMaxValueBytes);
  FUZZ_CHECK(request.key.size() <= kMaxKeyBytes);
  FUZZ_CHECK(request.type.size() <= kMaxTypeBytes);
  std::vector<std::byte> out;
  FUZZ_CHECK(encode_cache_request(request, out).is_ok());
  FUZZ_CHECK(viaduct::fuzz::same_bytes(out, in));
  return 0;
}
