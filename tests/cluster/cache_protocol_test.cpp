// The cache cluster's wire formats and the record cache, without processes: data requests and
// answers, control datagrams (MAC), the signed map, routing rules and the cache's bounds.
#include <gtest/gtest.h>

#include "cluster/cache/cache_protocol.hpp"
#include "cluster/cache/cluster_map.hpp"
#include "cluster/cache/control_protocol.hpp"
#include "cluster/cache/record_cache.hpp"
#include "cluster/member_auth.hpp"

namespace viaduct::cluster::cache {
namespace {

ClusterKey test_key(std::uint8_t fill) {
  std::array<std::byte, kClusterKeyBytes> bytes;
  bytes.fill(std::byte{fill});
  return ClusterKey::from_bytes(bytes);
}

std::vector<std::byte> bytes(std::string_view text) {
  auto s = as_bytes(text);
  return {s.begin(), s.end()};
}

ClusterMap four_servers() {
  ClusterMap map;
  map.epoch = 7;
  for (int i = 1; i <= 4; ++i) {
    MapServer s;
    s.id = "s" + std::to_string(i);
    s.group = i <= 2 ? "g1" : "g2";
    s.listen = "ofi+tcp://127.0.0.1:" + std::to_string(7000 + i);
    s.control = "127.0.0.1:" + std::to_string(7100 + i);
    s.types = {"t" + std::to_string(i)};
    map.servers.push_back(s);
  }
  return map;
}

TEST(CacheRequest, RoundTrip_EveryField) {
  auto key = bytes("key\0with nul");
  auto value = bytes("value");
  CacheRequest r;
  r.op = CacheOp::kPut;
  r.flags = kCacheFlagExpected;
  r.map_epoch = 9;
  r.expected_version = 4;
  r.client_id = 0x1122334455667788ull;
  r.seq = 3;
  r.type = "users";
  r.key = key;
  r.value = value;
  std::vector<std::byte> wire;
  ASSERT_TRUE(encode_cache_request(r, wire).is_ok());
  auto back = decode_cache_request(wire);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->op, CacheOp::kPut);
  EXPECT_EQ(back->flags, kCacheFlagExpected);
  EXPECT_EQ(back->map_epoch, 9u);
  EXPECT_EQ(back->expected_version, 4u);
  EXPECT_EQ(back->client_id, r.client_id);
  EXPECT_EQ(back->seq, 3u);
  EXPECT_EQ(back->type, "users");
  EXPECT_TRUE(std::equal(back->key.begin(), back->key.end(), key.begin(), key.end()));
  EXPECT_TRUE(std::equal(back->value.begin(), back->value.end(), value.begin(), value.end()));
}

TEST(CacheRequest, Malformed_EachRefusedWithAReason) {
  CacheRequest r;
  r.op = CacheOp::kGet;
  r.type = "users";
  auto key = bytes("k");
  r.key = key;
  std::vector<std::byte> wire;
  ASSERT_TRUE(encode_cache_request(r, wire).is_ok());
  auto broken = [&](auto&& edit) {
    auto copy = wire;
    edit(copy);
    return decode_cache_request(copy);
  };
  EXPECT_FALSE(broken([](auto& w) { w.resize(10); }).is_ok());               // short
  EXPECT_FALSE(broken([](auto& w) { w[0] = std::byte{2}; }).is_ok());        // version
  EXPECT_FALSE(broken([](auto& w) { w[1] = std::byte{9}; }).is_ok());        // op
  EXPECT_FALSE(broken([](auto& w) { w[2] = std::byte{0x80}; }).is_ok());     // flags
  EXPECT_FALSE(broken([](auto& w) { w.push_back(std::byte{0}); }).is_ok());  // length
  EXPECT_FALSE(broken([](auto& w) {
                 w[3] = std::byte{0};
                 w.pop_back();
               }).is_ok());  // no type
  // A get with a value, an empty key, an oversized value: refused when encoding too.
  CacheRequest bad = r;
  auto value = bytes("v");
  bad.value = value;
  EXPECT_FALSE(encode_cache_request(bad, wire).is_ok());
  bad = r;
  bad.key = {};
  EXPECT_FALSE(encode_cache_request(bad, wire).is_ok());
  std::vector<std::byte> huge(kMaxValueBytes + 1);
  bad = r;
  bad.op = CacheOp::kPut;
  bad.value = huge;
  auto refused = encode_cache_request(bad, wire);
  EXPECT_EQ(refused.code(), Code::kInvalidArgument);
  EXPECT_NE(refused.message().find("1 MiB"), std::string::npos);
}

TEST(ControlDatagram, MacChecked_TamperedOrOtherKeyRefused) {
  ClusterKey key = test_key(1);
  ControlMessage m;
  m.kind = ControlKind::kReport;
  m.nonce = 42;
  m.epoch = 3;
  m.subject = "s1";
  m.sender = "s2";
  m.body = bytes("body");
  std::vector<std::byte> wire;
  ASSERT_TRUE(encode_control(m, key, wire).is_ok());
  auto back = decode_control(wire, key);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->kind, ControlKind::kReport);
  EXPECT_EQ(back->nonce, 42u);
  EXPECT_EQ(back->subject, "s1");
  EXPECT_EQ(back->sender, "s2");
  EXPECT_EQ(back->body, m.body);
  EXPECT_EQ(decode_control(wire, test_key(2)).status().code(), Code::kUnauthenticated);
  for (std::size_t i = 0; i < wire.size(); i += 7) {
    auto copy = wire;
    copy[i] ^= std::byte{1};
    EXPECT_FALSE(decode_control(copy, key).is_ok()) << "byte " << i;
  }
  // The clients' key is not the members' key: a client cannot pass for a member.
  ClusterKey clients = key.derive("clients");
  ASSERT_TRUE(encode_control(m, clients, wire).is_ok());
  EXPECT_FALSE(decode_control(wire, key).is_ok());
  EXPECT_TRUE(decode_control(wire, clients).is_ok());
}

TEST(ClusterMap, SignedByTheMaster_OthersAndTamperingRefused) {
  ClusterKey key = test_key(3);
  ClusterMap map = four_servers();
  map.servers[1].state = ServerState::kOffline;
  map.servers[1].generation = 2;
  map.servers[0].key = key.service_public_key(server_key_name("s1"));
  auto wire = encode_signed_map(map, key, "master");
  auto master_key = key.service_public_key(master_key_name("master"));
  auto back = decode_signed_map(wire, master_key);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->epoch, 7u);
  ASSERT_EQ(back->servers.size(), 4u);
  EXPECT_EQ(back->servers[1].state, ServerState::kOffline);
  EXPECT_EQ(back->servers[1].generation, 2u);
  EXPECT_EQ(back->servers[0].key, map.servers[0].key);
  EXPECT_EQ(back->servers[3].types, std::vector<std::string>{"t4"});
  // Another master's key, a data server's key, a flipped byte: refused.
  EXPECT_EQ(
      decode_signed_map(wire, key.service_public_key(master_key_name("other"))).status().code(),
      Code::kUnauthenticated);
  EXPECT_FALSE(decode_signed_map(wire, key.service_public_key(server_key_name("s1"))).is_ok());
  auto copy = wire;
  copy[20] ^= std::byte{4};
  EXPECT_FALSE(decode_signed_map(copy, master_key).is_ok());
  copy = wire;
  copy.resize(30);
  EXPECT_FALSE(decode_signed_map(copy, master_key).is_ok());
}

TEST(ClusterMap, Routing_OwnerThenNextOnlineOfItsGroup) {
  ClusterMap map = four_servers();
  ASSERT_TRUE(map.check().is_ok());
  EXPECT_EQ(map.owner_of("t2")->id, "s2");
  EXPECT_EQ(map.owner_of("nope"), nullptr);
  EXPECT_EQ(map.failover_for(*map.find("s1"))->id, "s2");
  EXPECT_EQ(map.failover_for(*map.find("s2"))->id, "s1");  // wraps within the group
  EXPECT_EQ(map.failover_for(*map.find("s4"))->id, "s3");
  map.find("s2")->state = ServerState::kOffline;
  EXPECT_EQ(map.failover_for(*map.find("s1")), nullptr);  // the group's only other is down
  map.find("s2")->state = ServerState::kReturning;
  EXPECT_EQ(map.failover_for(*map.find("s1")), nullptr);  // returning serves nothing yet
}

TEST(ClusterMap, Check_RulesNamed) {
  ClusterMap map = four_servers();
  map.servers[2].types = {"t1"};
  EXPECT_NE(map.check().message().find("two owners"), std::string::npos);
  map = four_servers();
  map.servers[3].group = "g3";
  EXPECT_NE(map.check().message().find("needs two"), std::string::npos);
  map = four_servers();
  map.servers[1].id = "s1";
  EXPECT_NE(map.check().message().find("twice"), std::string::npos);
}

TEST(RecordCache, BoundedInBytes_LeastRecentlyUsedGoesFirst) {
  RecordCache cache(4096);
  std::vector<std::byte> value(1000);
  for (int i = 0; i < 10; ++i) {
    cache.store("t", as_bytes("k" + std::to_string(i)), CachedRecord{true, 1, value, 0});
    ASSERT_LE(cache.bytes(), 4096u);
  }
  EXPECT_LE(cache.size(), 4u);
  EXPECT_GT(cache.evictions(), 0u);
  EXPECT_EQ(cache.find("t", as_bytes("k0")), nullptr);
  EXPECT_NE(cache.find("t", as_bytes("k9")), nullptr);
  // A record larger than the whole cache is not kept (and evicts nothing).
  std::size_t before = cache.size();
  cache.store("t", as_bytes("huge"), CachedRecord{true, 1, std::vector<std::byte>(5000), 0});
  EXPECT_EQ(cache.find("t", as_bytes("huge")), nullptr);
  EXPECT_EQ(cache.size(), before);
}

TEST(RecordCache, DropOwner_OnlyThatOwnersEntries) {
  RecordCache cache(1 << 20);
  cache.store("a", as_bytes("1"), CachedRecord{true, 1, {}, 0});
  cache.store("b", as_bytes("1"), CachedRecord{true, 1, {}, 1});
  cache.store("b", as_bytes("2"), CachedRecord{false, 4, {}, 1});
  EXPECT_EQ(cache.drop_owner(1), 2u);
  EXPECT_NE(cache.find("a", as_bytes("1")), nullptr);
  EXPECT_EQ(cache.find("b", as_bytes("1")), nullptr);
  // Types and keys do not run into each other ("ab"+"c" is not "a"+"bc").
  cache.store("ab", as_bytes("c"), CachedRecord{true, 1, {}, 0});
  EXPECT_EQ(cache.find("a", as_bytes("bc")), nullptr);
}

}  // namespace
}  // namespace viaduct::cluster::cache
