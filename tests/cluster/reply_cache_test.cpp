#include "cluster/reply_cache.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace viaduct::cluster {
namespace {

std::vector<std::byte> bytes_of(std::size_t n) {
  return std::vector<std::byte>(n, std::byte{1});
}

TEST(ReplyCache, FindsWhatWasStored_PerClientEntriesBounded) {
  ReplyCache cache({.entries_per_client = 4});
  for (std::uint64_t seq = 1; seq <= 10; ++seq) cache.store(7, seq, 0, bytes_of(8));
  EXPECT_EQ(cache.find(7, 6), nullptr);  // evicted: only the newest 4 stay
  ASSERT_NE(cache.find(7, 10), nullptr);
  EXPECT_EQ(cache.find(7, 10)->response.size(), 8u);
  EXPECT_EQ(cache.entries(), 4u);
}

// Finding 6: one client cycling ids used to evict every real client. With ids bound to
// connections that takes many connections; even then the least recently active go first, and the
// total stays within its bounds in entries and bytes.
TEST(ReplyCache, SprayOfClients_BoundedInClientsAndBytes_ActiveClientKept) {
  ReplyCache cache({.entries_per_client = 16,
                    .bytes_per_client = 4096,
                    .total_bytes = 1 << 20,
                    .max_clients = 64});
  cache.store(1, 1, 0, bytes_of(100));  // the real client
  for (std::uint64_t id = 1000; id < 5000; ++id) {
    cache.store(id, 1, 0, bytes_of(1000));
    if (id % 16 == 0) cache.store(1, id, 0, bytes_of(100));  // the real client stays active
    ASSERT_LE(cache.clients(), 64u);
    ASSERT_LE(cache.bytes(), std::size_t{1} << 20);
  }
  EXPECT_NE(cache.find(1, 4992), nullptr);
}

TEST(ReplyCache, BytesPerClientBounded_OversizedAnswerNotKept) {
  ReplyCache cache({.entries_per_client = 100, .bytes_per_client = 1000});
  for (std::uint64_t seq = 1; seq <= 10; ++seq) cache.store(3, seq, 0, bytes_of(300));
  EXPECT_LE(cache.bytes(), 1000u);
  cache.store(3, 99, 0, bytes_of(5000));
  EXPECT_EQ(cache.find(3, 99), nullptr);
}

}  // namespace
}  // namespace viaduct::cluster
