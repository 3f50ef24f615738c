// cluster::ReplyCache::restore (the reply cache inside the active's snapshot, read by the passive)
// on arbitrary bytes, into a cache with small bounds so that eviction runs too.
// Properties: the bounds hold whatever the input; a refused input leaves the cache empty; an
// accepted one serializes to bytes that restore again to the same contents (serialize ∘ restore
// is a fixed point after one round); every cached entry is found by its key.
#include <vector>

#include "cluster/reply_cache.hpp"
#include "tests/fuzz/fuzz_check.hpp"
#include "transport/frame.hpp"

using namespace viaduct::cluster;

namespace {

constexpr ReplyCacheLimits kLimits{8, 256, 1024, 4};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  ReplyCache cache(kLimits);
  bool ok = cache.restore(in);
  FUZZ_CHECK(cache.clients() <= kLimits.max_clients);
  FUZZ_CHECK(cache.bytes() <= kLimits.total_bytes);
  FUZZ_CHECK(cache.entries() <= kLimits.max_clients * kLimits.entries_per_client);
  if (!ok) {
    FUZZ_CHECK(cache.entries() == 0 && cache.clients() == 0 && cache.bytes() == 0);
    return 0;
  }

  std::vector<std::byte> once;
  cache.serialize(once, SIZE_MAX);
  ReplyCache again(kLimits);
  FUZZ_CHECK(again.restore(once));
  FUZZ_CHECK(again.entries() == cache.entries() && again.clients() == cache.clients());
  FUZZ_CHECK(again.bytes() == cache.bytes());
  std::vector<std::byte> twice;
  again.serialize(twice, SIZE_MAX);
  FUZZ_CHECK(viaduct::fuzz::same_bytes(once, twice));

  // Every serialized entry is found, with its status and response.
  std::size_t at = 12;
  while (at + 24 <= twice.size()) {
    auto client = viaduct::transport::load_le<std::uint64_t>(twice.data() + at);
    auto seq = viaduct::transport::load_le<std::uint64_t>(twice.data() + at + 8);
    auto status = viaduct::transport::load_le<std::uint32_t>(twice.data() + at + 16);
    std::size_t length = viaduct::transport::load_le<std::uint32_t>(twice.data() + at + 20);
    const ReplyCache::Entry* e = again.find(client, seq);
    FUZZ_CHECK(e != nullptr && e->app_status == status && e->response.size() == length);
    FUZZ_CHECK(viaduct::fuzz::same_bytes(e->response, std::span(twice).subspan(at + 24, length)));
    at += 24 + length;
  }
  FUZZ_CHECK(at == twice.size());
  return 0;
}
