// The configuration file (tools/config): a valid file describes the cluster; every kind of
// mistake is refused with the key and its line named.
#include "tools/config/config_file.hpp"

#include <gtest/gtest.h>

#include <string>

#include "cluster/service_server.hpp"

namespace viaduct::config {
namespace {

// Tunables register themselves from the object that defines them: each test names the server's
// tunables it uses, so that the linker takes that object from the static library (the viaduct
// tool links it anyway).
void link_server_tunables() {
  ASSERT_GT(cluster::tunables::partner_takeover_after_ms.max_value(), 0);
  ASSERT_GE(cluster::tunables::partner_realtime_priority.max_value(), 0);
}

constexpr const char* kPair = R"(
[cluster]
key_file = "cluster.key"

[tunables]
partner_takeover_after_ms = 40

[[service]]
name = "ORDERS"
kind = "counter"

[[service.server]]
id = "orders-a"
role = "active"
listen = "ofi+tcp://127.0.0.1:7400"
lookup = "127.0.0.1:7434"

[[service.server]]
id = "orders-b"
role = "passive"
listen = "ofi+tcp://127.0.0.1:7410"
lookup = "127.0.0.1:7435"
[service.server.tunables]
partner_realtime_priority = 0

[[service]]
name = "STOCK"
[[service.server]]
id = "stock"
role = "active"
listen = "ofi+tcp://127.0.0.1:7500"
)";

TEST(ConfigFile, PairAndLoneServer_EverythingRead_KeyFileNextToTheFile) {
  link_server_tunables();
  auto file = parse(kPair, "/etc/viaduct/cluster.toml");
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_EQ(file->key_file, "/etc/viaduct/cluster.key");
  EXPECT_EQ(file->tunables.at("partner_takeover_after_ms"), 40);
  ASSERT_EQ(file->services.size(), 2u);
  const ServiceEntry* orders = file->service("ORDERS");
  ASSERT_NE(orders, nullptr);
  EXPECT_EQ(orders->kind, "counter");
  EXPECT_EQ(ConfigFile::lookup_list(*orders), "127.0.0.1:7434,127.0.0.1:7435");
  const ServiceEntry* of = nullptr;
  const ServerEntry* b = file->server("orders-b", &of);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(of, orders);
  EXPECT_FALSE(b->active);
  EXPECT_EQ(b->tunables.at("partner_realtime_priority"), 0);
  const ServerEntry* stock = file->server("stock");
  ASSERT_NE(stock, nullptr);
  EXPECT_EQ(stock->lookup, "off");
  EXPECT_EQ(file->service("STOCK")->kind, "echo");
}

// Each row: a mistake, and what the error must say (with the line of the culprit).
TEST(ConfigFile, Mistakes_RefusedNamingKeyAndLine) {
  link_server_tunables();
  struct Row {
    std::string text;
    std::string says;
  };
  const std::string server =
      "[[service]]\nname = \"S\"\n[[service.server]]\nid = \"s\"\nrole = \"active\"\n"
      "listen = \"ofi+tcp://127.0.0.1:1\"\n";
  const Row rows[] = {
      {"[tunables]\npartner_takeover_after = 40\n",
       "f.toml:2:26: unknown tunable 'partner_takeover_after'"},
      {"[tunables]\npartner_takeover_after_ms = \"40\"\n", "must be an integer"},
      {"[tunables]\npartner_takeover_after_ms = -1\n", "must be in ["},
      {"[clustr]\nkey_file = \"k\"\n", "unknown key 'clustr'"},
      {server + "lisen = \"x\"\n", "f.toml:7:9: unknown key 'lisen'"},
      {server + "epoch = 0\n", "epoch must be an integer >= 1"},
      {server + "lookup = \"nowhere\"\n", "lookup:"},
      {"[[service]]\nname = \"S\"\n[[service.server]]\nid = \"s\"\nrole = \"boss\"\n"
       "listen = \"ofi+tcp://127.0.0.1:1\"\n",
       "role must be \"active\" or \"passive\""},
      {"[[service]]\nname = \"S\"\n[[service.server]]\nid = \"s\"\nrole = \"active\"\n"
       "listen = \"carrier-pigeon://x\"\n",
       "listen:"},
      {"[[service]]\nname = \"S\"\n", "needs one or two [[service.server]]"},
      {"[[service]]\nkind = \"echo\"\n[[service.server]]\nid = \"s\"\nrole = \"active\"\n"
       "listen = \"ofi+tcp://127.0.0.1:1\"\n",
       "needs 'name'"},
      {server + "[[service.server]]\nid = \"t\"\nrole = \"active\"\nlisten = "
                "\"ofi+tcp://127.0.0.1:2\"\n",
       "exactly one active server, has 2"},
      {server + server, "service 'S' twice"},
      {"[cluster\n", "f.toml:1:"},
  };
  for (const Row& row : rows) {
    auto file = parse(row.text, "f.toml");
    ASSERT_FALSE(file.is_ok()) << row.text;
    EXPECT_EQ(file.status().code(), Code::kInvalidArgument);
    EXPECT_NE(file.status().message().find(row.says), std::string::npos)
        << "for:\n"
        << row.text << "\ngot: " << file.status().message() << "\nwanted: " << row.says;
  }
}

// The cache cluster's section: read whole, and each mistake named with its key and line.
TEST(ConfigFile, CacheCluster_ReadAndMistakesNamed) {
  const std::string head =
      "[cache]\ndatabase = \"sqlite:c.db\"\n[cache.master]\nid = \"m\"\n"
      "control = \"127.0.0.1:7600\"\n[[cache.group]]\nname = \"g1\"\n";
  auto server = [](const std::string& id, const std::string& type) {
    return "[[cache.group.server]]\nid = \"" + id + "\"\nlisten = \"ofi+tcp://127.0.0.1:7" + id +
           "\"\ncontrol = \"127.0.0.1:8" + id + "\"\ntypes = [\"" + type + "\"]\n";
  };
  auto good = parse(head + server("1", "a") + server("2", "b"), "/etc/v/c.toml");
  ASSERT_TRUE(good.is_ok()) << good.status().to_string();
  ASSERT_TRUE(good->cache.has_value());
  EXPECT_EQ(good->cache->database, "sqlite:/etc/v/c.db");  // next to the file
  EXPECT_EQ(good->cache->master_control, "127.0.0.1:7600");
  ASSERT_EQ(good->cache->servers.size(), 2u);
  EXPECT_EQ(good->cache->servers[1].group, "g1");
  EXPECT_EQ(good->cache->servers[1].types, std::vector<std::string>{"b"});
  struct Row {
    std::string text;
    std::string says;
  };
  const Row rows[] = {
      {head + server("1", "a"), "needs two or more [[cache.group.server]]"},
      {head + server("1", "a") + server("2", "a"), "type 'a' has two owners"},
      {head + server("1", "a") + server("1", "b"), "server id '1' twice"},
      {head + server("1", "a") + server("2", "b") + "colour = 1\n", "unknown key 'colour'"},
      {"[cache]\ndatabase = \"mysql://x\"\n", "database must be"},
      {"[cache]\ndatabase = \"sqlite:c.db\"\n", "needs a [cache.master]"},
      {head +
           "[[cache.group.server]]\nid = \"1\"\nlisten = \"ofi+tcp://127.0.0.1:1\"\n"
           "types = [\"a\"]\n" +
           server("2", "b"),
       "needs 'control'"},
      {head +
           "[[cache.group.server]]\nid = \"1\"\nlisten = \"ofi+tcp://127.0.0.1:1\"\n"
           "control = \"127.0.0.1:2\"\ntypes = []\n" +
           server("2", "b"),
       "needs 'types'"},
  };
  for (const Row& row : rows) {
    auto file = parse(row.text, "f.toml");
    ASSERT_FALSE(file.is_ok()) << row.text;
    EXPECT_NE(file.status().message().find(row.says), std::string::npos)
        << "for:\n"
        << row.text << "\ngot: " << file.status().message() << "\nwanted: " << row.says;
  }
}

}  // namespace
}  // namespace viaduct::config
