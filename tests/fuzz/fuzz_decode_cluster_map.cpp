// cluster::cache::decode_signed_map (the master's map, as clients and data servers receive it) on
// arbitrary bytes, against the fixed cluster key's master key. Properties: a map that decodes
// passed its own rules (check()), and signing it again gives the same bytes (Ed25519 signatures
// are deterministic).
#include "cluster/cache/cluster_map.hpp"
#include "cluster/member_auth.hpp"
#include "tests/fuzz/fuzz_check.hpp"
#include "tests/fuzz/fuzz_keys.hpp"

using namespace viaduct::cluster::cache;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& key = viaduct::fuzz::fixed_cluster_key();
  static const auto master = key.service_public_key(master_key_name("master"));
  auto in = viaduct::fuzz::bytes_of(data, size);
  auto map = decode_signed_map(in, master);
  if (!map.is_ok()) return 0;
  FUZZ_CHECK(map.value().check().is_ok());
  FUZZ_CHECK(viaduct::fuzz::same_bytes(encode_signed_map(map.value(), key, "master"), in));
  return 0;
}
