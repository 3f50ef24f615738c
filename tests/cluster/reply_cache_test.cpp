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

namespace viaduct::cluster {
namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()),
          reinterpret_cast<const std::byte*>(s.data()) + s.size()};
}

// The cache travels with the snapshot: a passive that joined after a request was executed answers
// its re-send from the cache instead of executing it again.
TEST(ReplyCacheSnapshot, SerializedAndRestored_SameAnswers_NewestClientsKeptWhenOverBudget) {
  ReplyCache cache;
  cache.store(1, 1, 0, bytes_of("one"));
  cache.store(1, 2, 7, bytes_of("two"));
  cache.store(2, 1, 0, bytes_of("other client"));
  std::vector<std::byte> wire;
  cache.serialize(wire, 1 << 20);
  ReplyCache passive;
  ASSERT_TRUE(passive.restore(wire));
  EXPECT_EQ(passive.entries(), 3u);
  ASSERT_NE(passive.find(1, 2), nullptr);
  EXPECT_EQ(passive.find(1, 2)->app_status, 7u);
  EXPECT_EQ(passive.find(1, 2)->response, bytes_of("two"));
  EXPECT_EQ(passive.find(2, 1)->response, bytes_of("other client"));
  // A budget for one client's entries only: the most recently active client (2) is kept.
  cache.serialize(wire, 12 + 24 + 12);
  ASSERT_TRUE(passive.restore(wire));
  EXPECT_EQ(passive.entries(), 1u);
  EXPECT_NE(passive.find(2, 1), nullptr);
  EXPECT_EQ(passive.find(1, 1), nullptr);
  // An empty snapshot (an older active, nothing cached) empties the cache.
  ASSERT_TRUE(passive.restore({}));
  EXPECT_EQ(passive.entries(), 0u);
}

TEST(ReplyCacheSnapshot, MalformedRefusedWhole_CacheLeftEmpty) {
  ReplyCache cache;
  cache.store(1, 1, 0, bytes_of("one"));
  cache.store(1, 2, 0, bytes_of("two"));
  std::vector<std::byte> wire;
  cache.serialize(wire, 1 << 20);
  ReplyCache passive;
  for (std::size_t cut = 1; cut < wire.size(); ++cut) {  // every truncation
    EXPECT_FALSE(passive.restore(std::span(wire).first(cut))) << "cut at " << cut;
    EXPECT_EQ(passive.entries(), 0u);
  }
  auto longer = wire;
  longer.push_back(std::byte{0});  // trailing bytes
  EXPECT_FALSE(passive.restore(longer));
  auto huge = wire;
  huge[12 + 20] = std::byte{0xFF};  // a length past the end
  huge[12 + 23] = std::byte{0x7F};
  EXPECT_FALSE(passive.restore(huge));
  auto version = wire;
  version[4] = std::byte{2};
  EXPECT_FALSE(passive.restore(version));
  EXPECT_EQ(passive.entries(), 0u);
}

}  // namespace
}  // namespace viaduct::cluster
