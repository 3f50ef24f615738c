// cluster::cache::decode_control (the cache cluster's UDP control datagrams: reports, probes,
// leases, notices, map requests) on arbitrary bytes, under the fixed cluster key and under the
// clients' key derived from it. Property: whatever decodes re-encodes to the same bytes (the MAC
// covers every byte).
#include "cluster/cache/control_protocol.hpp"
#include "tests/fuzz/fuzz_check.hpp"
#include "tests/fuzz/fuzz_keys.hpp"

using namespace viaduct::cluster::cache;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const viaduct::cluster::ClusterKey clients =
      viaduct::fuzz::fixed_cluster_key().derive("clients");
  auto in = viaduct::fuzz::bytes_of(data, size);
  const auto& key = control_claims_client(in) ? clients : viaduct::fuzz::fixed_cluster_key();
  auto m = decode_control(in, key);
  if (!m.is_ok()) return 0;
  std::vector<std::byte> out;
  FUZZ_CHECK(encode_control(m.value(), key, out).is_ok());
  FUZZ_CHECK(viaduct::fuzz::same_bytes(out, in));
  return 0;
}
