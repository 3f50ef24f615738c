// cluster::decode_replica (the active's replication request to its passive) on arbitrary bytes.
// Property: decode(encode(x)) == x, the spans stay inside the input, and the encoding matches the
// input except the three pad bytes, which decode ignores.
#include <vector>

#include "cluster/partner_protocol.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace viaduct::cluster;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  auto replica = decode_replica(in);
  FUZZ_CHECK(!replica.is_ok() || is_replica(in));
  if (!replica.is_ok()) return 0;

  const Replica& r = replica.value();
  FUZZ_CHECK(r.request.data() == in.data() + kReplicaHeaderBytes);
  FUZZ_CHECK(kReplicaHeaderBytes + r.request.size() + r.response.size() == size);

  std::vector<std::byte> out;
  encode_replica(r, out);
  FUZZ_CHECK(out.size() == size);
  FUZZ_CHECK(viaduct::fuzz::same_bytes(std::span(out).first(5), in.first(5)));
  FUZZ_CHECK(viaduct::fuzz::same_bytes(std::span(out).subspan(8), in.subspan(8)));

  auto again = decode_replica(out);
  FUZZ_CHECK(again.is_ok());
  const Replica& a = again.value();
  FUZZ_CHECK(a.kind == r.kind && a.epoch == r.epoch && a.client_id == r.client_id);
  FUZZ_CHECK(a.seq == r.seq && a.app_status == r.app_status);
  FUZZ_CHECK(viaduct::fuzz::same_bytes(a.request, r.request));
  FUZZ_CHECK(viaduct::fuzz::same_bytes(a.response, r.response));
  return 0;
}
