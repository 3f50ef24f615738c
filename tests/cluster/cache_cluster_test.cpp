// The cache cluster as real processes: a master and four data servers (`viaduct master`,
// `viaduct cache-server`, two failover groups) over ofi+tcp on 127.0.0.1, a real SQLite file
// (and a real PostgreSQL when VIADUCT_TEST_POSTGRES_URI is set: tests/pg/with_postgres.sh), and
// clients in this process. Servers are SIGKILLed and SIGSTOPped for real, and cut off by network
// namespaces (CacheClusterNetns, as root); every read of the checked workload is held against
// the last acknowledged write, and every key is read back at the end through the cluster and
// from the database.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "cluster/cache/cache_client.hpp"
#include "cluster/cache/cache_protocol.hpp"
#include "cluster/cache/control_protocol.hpp"
#include "cluster/member_auth.hpp"
#include "failover/udp_socket.hpp"
#include "tests/scoped_tunable.hpp"
#include "tests/test_ports.hpp"
#include "tools/bench/netns_lab.hpp"
#include "tools/cache/cache_workload.hpp"
#include "tools/cache/local_cluster.hpp"
#include "transport/channel.hpp"
#include "transport/clock.hpp"
#include "transport/verbs/verbs_domain.hpp"

namespace viaduct::cluster::cache {
namespace {

using tools::CacheWorkload;
using tools::CacheWorkloadOptions;
using tools::LocalCluster;

enum class Database { kSqlite, kPostgres };
// Where the cluster runs: ofi+tcp on 127.0.0.1 here, verbs in the Soft-RoCE guest.
struct Setup {
  const char* transport;
  Database database;
};

void PrintTo(const Setup& setup, std::ostream* out) {
  *out << setup.transport << " + "
       << (setup.database == Database::kSqlite ? "sqlite" : "postgresql");
}

std::string name_of(const ::testing::TestParamInfo<Setup>& info) {
  if (std::string(info.param.transport) == "verbs") return "verbs";
  return info.param.database == Database::kSqlite ? "sqlite" : "postgresql";
}

std::vector<std::byte> bytes(std::string_view text) {
  auto s = as_bytes(text);
  return {s.begin(), s.end()};
}

std::string text(const std::vector<std::byte>& value) {
  return std::string(reinterpret_cast<const char*>(value.data()), value.size());
}

// What every cluster test needs: the cluster started from its options, clients of it, the
// daemons' lines waited for, a checked load.
class ClusterTest : public ::testing::Test {
 protected:
  // Fills in what every test's cluster shares (tool, a fresh directory, ports, the short
  // failover window), starts it and opens client_. `options.host` is where the master is
  // reached from this process.
  void start_cluster(tools::LocalClusterOptions options) {
    std::string pattern = ::testing::TempDir() + "cache-cluster-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    options.tool = VIADUCT_TOOL;
    options.dir = dir_;
    options.base_port = testing::test_port_block();
    auto master_host = options.host_of.find("master");
    host_ = master_host == options.host_of.end() ? options.host : master_host->second;
    // A short failover window: the tests wait for clients to come back.
    options.tunables["cache_failover_window_ms"] = 200;
    customize(options);
    base_port_ = options.base_port;
    auto cluster = LocalCluster::create(options);
    ASSERT_TRUE(cluster.is_ok()) << cluster.status().to_string();
    cluster_ = std::move(cluster.value());
    auto started = cluster_->start();
    ASSERT_TRUE(started.is_ok()) << started.to_string();
    client_ = open_client("test-client");
  }

  // A suite's changes to the cluster, before it starts.
  virtual void customize(tools::LocalClusterOptions& /*options*/) {}

  std::unique_ptr<CacheClient> open_client(const std::string& name) {
    auto options = cluster_->client_options(name);
    EXPECT_TRUE(options.is_ok());
    if (!options) return nullptr;
    auto client = CacheClient::open(options.value());
    EXPECT_TRUE(client.is_ok()) << client.status().to_string();
    return client ? std::move(client.value()) : nullptr;
  }

  // True once a line containing every one of `parts` was printed by any process.
  bool saw(std::initializer_list<std::string_view> parts) {
    for (const auto& line : cluster_->lines()) {
      bool all = true;
      for (auto p : parts) all = all && line.find(p) != std::string::npos;
      if (all) return true;
    }
    return false;
  }
  bool wait_for(std::initializer_list<std::string_view> parts, int timeout_ms) {
    std::int64_t end = steady_now_ns() + std::int64_t{timeout_ms} * 1'000'000;
    while (steady_now_ns() < end) {
      if (saw(parts)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return saw(parts);
  }
  void expect_all_alive() {
    EXPECT_TRUE(cluster_->alive("master")) << "the master died";
    for (const auto& id : cluster_->server_ids()) EXPECT_TRUE(cluster_->alive(id)) << id << " died";
  }
  std::string type_of(const std::string& id) { return cluster_->types_of(id).front(); }
  // Keeps the client busy on `type` until `done` (or the deadline): what brings it back out of
  // failover mode, which it leaves on its own next request after the window.
  void exercise_until(CacheClient& client, const std::string& type,
                      const std::function<bool()>& done, int timeout_ms) {
    std::int64_t end = steady_now_ns() + std::int64_t{timeout_ms} * 1'000'000;
    while (!done() && steady_now_ns() < end) {
      auto r = client.get(type, as_bytes("probe"));
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  // A checked workload on its own thread, until stopped.
  struct Load {
    std::unique_ptr<CacheClient> client;
    std::unique_ptr<CacheWorkload> workload;
    std::atomic<bool> stop{false};
    std::thread thread;
    // The client's events ("failover-enter s1") with their time: the client belongs to the
    // load's thread, so this is how the test sees what it went through.
    std::mutex mutex;
    std::vector<std::pair<std::int64_t, std::string>> events;

    // True once the client had `event` at or after `since` (waits up to timeout_ms).
    bool wait_event(const std::string& event, std::int64_t since, int timeout_ms) {
      std::int64_t end = steady_now_ns() + std::int64_t{timeout_ms} * 1'000'000;
      for (;;) {
        {
          std::lock_guard lock(mutex);
          for (const auto& [at, what] : events) {
            if (at >= since && what == event) return true;
          }
        }
        if (steady_now_ns() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  };
  std::unique_ptr<Load> start_load(std::uint64_t seed) {
    auto load = std::make_unique<Load>();
    load->client = open_client("load");
    load->client->on_event = [raw = load.get()](std::string_view what, std::string_view server) {
      std::int64_t now = steady_now_ns();
      std::lock_guard lock(raw->mutex);
      raw->events.emplace_back(now, std::string(what) + " " + std::string(server));
    };
    CacheWorkloadOptions options;
    options.seconds = 3600;
    options.seed = seed;
    options.keys_per_type = 32;
    load->workload = std::make_unique<CacheWorkload>(*load->client, options);
    load->thread = std::thread([raw = load.get()] { raw->workload->run(raw->stop); });
    return load;
  }
  // What the load's client went through, for a failure message.
  static std::string describe(Load& load) {
    std::ostringstream out;
    const auto& r = load.workload->report();
    const auto& st = load.client->stats();
    out << "longest operation " << r.max_latency_ns / 1'000'000 << " ms; calls " << st.calls
        << ", failed attempts " << st.attempts_failed << ", failover entered "
        << st.failover_entered << " left " << st.failover_left << ", not-serving " << st.not_serving
        << ", map fetches " << st.map_fetches << "; events:";
    std::lock_guard lock(load.mutex);
    std::int64_t first = load.events.empty() ? 0 : load.events.front().first;
    for (const auto& [at, what] : load.events) {
      out << "\n  +" << (at - first) / 1'000'000 << " ms " << what;
    }
    return out.str();
  }
  void finish(Load& load) {
    load.stop = true;
    load.thread.join();
    load.workload->verify(cluster_->database());
    const auto& r = load.workload->report();
    std::printf("[ measure  ] load: %llu operations, longest %.1f ms\n",
                static_cast<unsigned long long>(r.operations),
                static_cast<double>(r.max_latency_ns) / 1e6);
    EXPECT_GT(r.operations, 100u) << describe(load);
    EXPECT_EQ(r.errors, 0u) << r.first_error;
    EXPECT_EQ(r.stale_reads, 0u) << r.first_error;
    EXPECT_EQ(r.wrong_values, 0u) << r.first_error;
    EXPECT_EQ(r.lost_writes, 0u) << r.first_error;
    EXPECT_EQ(r.lost_in_database, 0u) << r.first_error;
  }

  // The clients in this process use the same short window as the daemons' file says.
  testing::ScopedTunable window_{tunables::cache_failover_window_ms, 200};
  std::string dir_;
  std::string host_;  // the master's
  std::uint16_t base_port_ = 0;
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<CacheClient> client_;
};

class CacheClusterTest : public ClusterTest, public ::testing::WithParamInterface<Setup> {
 protected:
  void SetUp() override {
    tools::LocalClusterOptions options;
    if (std::string(GetParam().transport) == "verbs") {
      if (!transport::verbs::probe().usable) GTEST_SKIP() << "skipped: no RDMA device";
      const char* at = std::getenv("VIADUCT_TEST_VERBS_HOST");
      options.host = at != nullptr ? at : "10.77.0.1";
    }
    if (GetParam().database == Database::kPostgres) {
      const char* uri = std::getenv("VIADUCT_TEST_POSTGRES_URI");
      if (uri == nullptr || *uri == '\0') {
        GTEST_SKIP() << "skipped: no PostgreSQL (VIADUCT_TEST_POSTGRES_URI unset; "
                        "tests/pg/with_postgres.sh starts one)";
      }
      options.database = uri;
    }
    options.provider = GetParam().transport;
    start_cluster(options);
  }
};

TEST_P(CacheClusterTest, PutGetDeleteCas_TypesOfBothGroups_VersionsGrow) {
  for (const auto& id : cluster_->server_ids()) {
    std::string type = type_of(id);
    auto v1 = client_->put(type, as_bytes("k"), as_bytes("one"));
    ASSERT_TRUE(v1.is_ok()) << v1.status().to_string();
    auto got = client_->get(type, as_bytes("k"));
    ASSERT_TRUE(got.is_ok());
    EXPECT_TRUE(got->found);
    EXPECT_EQ(text(got->value), "one");
    EXPECT_EQ(got->version, v1.value());
    auto lost = client_->put_if_version(type, as_bytes("k"), as_bytes("x"), v1.value() + 5);
    ASSERT_TRUE(lost.is_ok());
    EXPECT_FALSE(lost->applied);
    EXPECT_EQ(lost->version, v1.value());
    auto won = client_->put_if_version(type, as_bytes("k"), as_bytes("two"), v1.value());
    ASSERT_TRUE(won.is_ok());
    EXPECT_TRUE(won->applied);
    EXPECT_EQ(won->version, v1.value() + 1);
    auto gone = client_->remove(type, as_bytes("k"));
    ASSERT_TRUE(gone.is_ok());
    EXPECT_EQ(gone.value(), v1.value() + 2);
    got = client_->get(type, as_bytes("k"));
    ASSERT_TRUE(got.is_ok());
    EXPECT_FALSE(got->found);
    EXPECT_EQ(got->version, v1.value() + 2);
  }
  expect_all_alive();
}

TEST_P(CacheClusterTest, BadInput_UnknownTypeOversizedValue_ClearErrors_ServersKeepServing) {
  auto unknown = client_->get("no-such-type", as_bytes("k"));
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_EQ(unknown.status().code(), Code::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("unknown type"), std::string::npos);
  std::vector<std::byte> huge(kMaxValueBytes + 1, std::byte{'x'});
  auto oversized = client_->put(type_of("s1"), as_bytes("k"), huge);
  ASSERT_FALSE(oversized.is_ok());
  EXPECT_NE(oversized.status().message().find("1 MiB"), std::string::npos);
  // A value of exactly 1 MiB goes (by the channel's rendezvous) and comes back whole.
  std::vector<std::byte> big(kMaxValueBytes, std::byte{'y'});
  big[12345] = std::byte{'z'};
  ASSERT_TRUE(client_->put(type_of("s1"), as_bytes("big"), big).is_ok());
  auto back = client_->get(type_of("s1"), as_bytes("big"));
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->value, big);
  ASSERT_TRUE(client_->put(type_of("s2"), as_bytes("k"), as_bytes("v")).is_ok());
  expect_all_alive();
}

TEST_P(CacheClusterTest, MalformedRequests_AnsweredInvalid_SameConnectionKeepsServing) {
  auto address = transport::Address::parse(client_->map().find("s1")->listen);
  ASSERT_TRUE(address.is_ok());
  auto domain = transport::Domain::open(address.value());
  ASSERT_TRUE(domain.is_ok());
  auto channel = transport::Channel::connect(*domain.value(), address.value(), {}, 5000);
  ASSERT_TRUE(channel.is_ok()) << channel.status().to_string();
  std::vector<std::byte> answer(4096);
  for (std::string garbage : {std::string("x"), std::string(48, '\0'), std::string(200, '\x01')}) {
    std::uint32_t status = 0;
    auto n = channel.value()->call(as_bytes(garbage), answer, 5000, &status);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    EXPECT_EQ(status, static_cast<std::uint32_t>(CacheStatus::kInvalid));
    auto decoded = decode_cache_answer(std::span(answer.data(), n.value()));
    ASSERT_TRUE(decoded.is_ok());
    EXPECT_FALSE(decoded->value.empty()) << "an invalid request is told why";
  }
  CacheRequest get;
  get.op = CacheOp::kGet;
  const std::string type = type_of("s1");  // the request's type is a view: keep it alive
  get.type = type;
  auto key = bytes("k");
  get.key = key;
  std::vector<std::byte> wire;
  ASSERT_TRUE(encode_cache_request(get, wire).is_ok());
  std::uint32_t status = 99;
  auto n = channel.value()->call(wire, answer, 5000, &status);
  ASSERT_TRUE(n.is_ok());
  EXPECT_TRUE(status == static_cast<std::uint32_t>(CacheStatus::kNotFound) ||
              status == static_cast<std::uint32_t>(CacheStatus::kOk));
  expect_all_alive();
}

TEST_P(CacheClusterTest, ForgedDatagrams_RefusedByMasterAndServers_NothingChanges) {
  auto master = failover::UdpEndpoint::parse(host_ + ":" + std::to_string(base_port_));
  auto s1_control = failover::UdpEndpoint::parse(client_->map().find("s1")->control);
  ASSERT_TRUE(master.is_ok() && s1_control.is_ok());
  auto socket = failover::UdpSocket::bind(failover::UdpEndpoint::from(host_, 0).value());
  ASSERT_TRUE(socket.is_ok());
  std::array<std::byte, kClusterKeyBytes> wrong_bytes{};
  wrong_bytes.fill(std::byte{7});
  ClusterKey wrong = ClusterKey::from_bytes(wrong_bytes);
  auto real = ClusterKey::load(cluster_->key_path());
  ASSERT_TRUE(real.is_ok());
  ClusterKey clients = real->derive("clients");
  std::vector<std::byte> wire;
  auto send = [&](const ControlMessage& m, const ClusterKey& key, const failover::UdpEndpoint& to) {
    ASSERT_TRUE(encode_control(m, key, wire).is_ok());
    ASSERT_TRUE(socket->send_to(wire, to).is_ok());
  };
  ControlMessage report;
  report.kind = ControlKind::kReport;
  report.subject = "s1";
  report.sender = "forger";
  for (int i = 0; i < 50; ++i) {
    report.nonce = static_cast<std::uint64_t>(i);
    send(report, wrong, master.value());  // no key: refused
  }
  // A client (holding the clients' key) cannot act as a member: no lease, no notice ack.
  ControlMessage lease;
  lease.kind = ControlKind::kLease;
  lease.flags = kFlagFromClient;
  lease.subject = "s1";
  lease.sender = "s1";
  send(lease, clients, master.value());
  // A forged map notice to a data server: not signed by the master.
  ControlMessage notice;
  notice.kind = ControlKind::kNotice;
  ClusterMap fake = client_->map();
  fake.epoch += 100;
  fake.find("s1")->state = ServerState::kOffline;
  notice.body = encode_signed_map(fake, wrong, "master");
  send(notice, real.value(), s1_control.value());
  // Garbage of every length.
  for (std::size_t n : {0, 1, 31, 64, 600, 9000}) {
    std::vector<std::byte> junk(n, std::byte{0x5a});
    (void)socket->send_to(junk, master.value());
    (void)socket->send_to(junk, s1_control.value());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(saw({"master report s1"})) << "a report without the key was acted on";
  EXPECT_FALSE(saw({"offline"})) << "something was marked offline";
  EXPECT_FALSE(saw({"map " + std::to_string(fake.epoch)})) << "a forged map was adopted";
  // Everybody still serves, the map is the master's.
  auto fresh = open_client("after-forgery");
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(fresh->map().find("s1")->state, ServerState::kOnline);
  ASSERT_TRUE(fresh->put(type_of("s1"), as_bytes("k"), as_bytes("v")).is_ok());
  expect_all_alive();
}

// A client that reports a healthy server again and again (it holds the clients' key: a real
// client, lying or confused): the master verifies each burst by probing the server itself, and
// never marks it offline. Meanwhile a checked load sees nothing.
TEST_P(CacheClusterTest, LyingClient_HealthyServerReported_VerifiedAliveNeverOffline) {
  auto load = start_load(11);
  auto real = ClusterKey::load(cluster_->key_path());
  ASSERT_TRUE(real.is_ok());
  ClusterKey clients = real->derive("clients");
  auto socket = failover::UdpSocket::bind(failover::UdpEndpoint::from(host_, 0).value());
  auto master = failover::UdpEndpoint::parse(host_ + ":" + std::to_string(base_port_));
  ASSERT_TRUE(socket.is_ok() && master.is_ok());
  std::vector<std::byte> wire;
  std::int64_t end = steady_now_ns() + 2'000'000'000;
  for (std::uint64_t i = 0; steady_now_ns() < end; ++i) {
    ControlMessage lie;
    lie.kind = ControlKind::kReport;
    lie.flags = kFlagFromClient;
    lie.nonce = i;
    lie.subject = i % 2 == 0 ? "s1" : "s3";
    lie.sender = "liar";
    ASSERT_TRUE(encode_control(lie, clients, wire).is_ok());
    (void)socket->send_to(wire, master.value());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  finish(*load);
  EXPECT_TRUE(saw({"master verified-alive s1"}));
  EXPECT_TRUE(saw({"master verified-alive s3"}));
  EXPECT_FALSE(saw({"master offline"})) << "a reachable server was marked offline";
  expect_all_alive();
}

// SIGKILL of a data server under a checked load: the master hears of it, finds its port dead,
// marks it offline and tells its group; the load never sees an error; the server restarts,
// comes back online through the returning barrier, and the clients leave failover mode.
TEST_P(CacheClusterTest, KilledServer_LoadSeesNoError_BackOnlineAfterRestart_NothingLost) {
  auto load = start_load(21);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cluster_->kill("s1");
  ASSERT_TRUE(wait_for({"master group-notified s1"}, 5000)) << "no verdict";
  EXPECT_TRUE(saw({"master verdict-offline s1", "refused"}));
  EXPECT_TRUE(saw({"cache-server s2 map", "s1 offline"}));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(cluster_->start_server("s1").is_ok());
  ASSERT_TRUE(wait_for({"master online s1"}, 5000));
  EXPECT_TRUE(saw({"master returning s1"}));
  exercise_until(
      *client_, type_of("s1"), [&] { return !client_->in_failover_mode("s1"); }, 3000);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  finish(*load);
  EXPECT_GE(load->client->stats().failover_entered, 1u);
  EXPECT_FALSE(load->client->in_failover_mode("s1")) << "the load's client stayed away from s1";
  expect_all_alive();
}

// SIGSTOP: the master's probes go unanswered; it marks the server offline only once the lease it
// granted ran out; after SIGCONT the server learns it was offline before serving anything from
// its cache, a re-check brings it back, the clients leave failover mode.
TEST_P(CacheClusterTest, FrozenServer_OfflineAfterItsLease_ThawedBackOnline_NothingLost) {
  auto load = start_load(31);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cluster_->freeze("s3");
  ASSERT_TRUE(wait_for({"master offline s3"}, 5000)) << "no verdict";
  EXPECT_TRUE(saw({"master verdict-offline s3", "silent"}));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cluster_->thaw("s3");
  ASSERT_TRUE(wait_for({"master online s3"}, 5000));
  EXPECT_TRUE(wait_for({"cache-server s3", "marked offline meanwhile"}, 2000));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  finish(*load);
  EXPECT_FALSE(load->client->in_failover_mode("s3"));
  expect_all_alive();
}

// facebook/mcrouter#202: a delete and a set went to the failover server while the owner was
// out; once the owner came back, reads returned the old value. Here the owner is frozen (its
// cache survives, unlike a restart), the key is deleted and written again meanwhile; after the
// owner is back, every read — through a client that followed the map, through a fresh client,
// and straight at the owner's port by a client with an old map — returns the last write.
TEST_P(CacheClusterTest, Mcrouter202_DeleteAndPutWhileOwnerFrozen_NoStaleReadAfterItReturns) {
  const std::string type = type_of("s1");
  ASSERT_TRUE(client_->put(type, as_bytes("k"), as_bytes("old")).is_ok());
  auto cached = client_->get(type, as_bytes("k"));  // s1 caches "old"
  ASSERT_TRUE(cached.is_ok());
  ASSERT_EQ(text(cached->value), "old");
  // A connection straight to s1, as a client with an old map would hold.
  auto address = transport::Address::parse(client_->map().find("s1")->listen);
  auto domain = transport::Domain::open(address.value());
  ASSERT_TRUE(domain.is_ok());
  auto direct = transport::Channel::connect(*domain.value(), address.value(), {}, 5000);
  ASSERT_TRUE(direct.is_ok());

  cluster_->freeze("s1");
  auto deleted = client_->remove(type, as_bytes("k"));
  ASSERT_TRUE(deleted.is_ok()) << deleted.status().to_string();
  auto written = client_->put(type, as_bytes("k"), as_bytes("new"));
  ASSERT_TRUE(written.is_ok()) << written.status().to_string();
  EXPECT_TRUE(saw({"master offline s1"}));
  auto during = client_->get(type, as_bytes("k"));
  ASSERT_TRUE(during.is_ok());
  EXPECT_EQ(text(during->value), "new");

  // The old map's client asks s1 the moment it wakes: never "old".
  CacheRequest get;
  get.op = CacheOp::kGet;
  get.type = type;
  auto key = bytes("k");
  get.key = key;
  std::vector<std::byte> wire;
  ASSERT_TRUE(encode_cache_request(get, wire).is_ok());
  cluster_->thaw("s1");
  std::vector<std::byte> answer(4096);
  std::uint32_t status = 0;
  auto n = direct.value()->call(wire, answer, 5000, &status);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  auto decoded = decode_cache_answer(std::span(answer.data(), n.value()));
  ASSERT_TRUE(decoded.is_ok());
  if (status == static_cast<std::uint32_t>(CacheStatus::kOk)) {
    EXPECT_EQ(text({decoded->value.begin(), decoded->value.end()}), "new")
        << "the woken owner served its stale cache";
    EXPECT_EQ(decoded->record_version, written.value());
  } else {
    EXPECT_EQ(status, static_cast<std::uint32_t>(CacheStatus::kNotServing));
  }

  ASSERT_TRUE(wait_for({"master online s1"}, 5000));
  exercise_until(
      *client_, type, [&] { return !client_->in_failover_mode("s1"); }, 3000);
  ASSERT_FALSE(client_->in_failover_mode("s1"));
  auto after = client_->get(type, as_bytes("k"));
  ASSERT_TRUE(after.is_ok());
  EXPECT_EQ(text(after->value), "new");
  EXPECT_EQ(after->version, written.value());
  auto fresh = open_client("fresh");
  auto fresh_read = fresh->get(type, as_bytes("k"));
  ASSERT_TRUE(fresh_read.is_ok());
  EXPECT_EQ(text(fresh_read->value), "new");
  EXPECT_EQ(fresh_read->version, written.value());
  expect_all_alive();
}

// The master dies and comes back: while it is gone the data servers' leases run out and they
// serve nothing from their caches (the load's calls wait, they do not fail); the new master
// starts on an epoch above its predecessor's, grants no lease for one lease's time, and the load
// goes on without an error or a stale read.
TEST_P(CacheClusterTest, MasterKilledAndRestarted_LoadWaitsThenResumes_NoErrorNoStaleRead) {
  auto load = start_load(41);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  cluster_->kill("master");
  ASSERT_TRUE(wait_for({"lease lapsed"}, 3000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(cluster_->start_master().is_ok());
  std::uint64_t before = load->workload->report().operations;
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  finish(*load);
  EXPECT_GT(load->workload->report().operations, before) << "the load did not resume";
  auto fresh = open_client("after-restart");
  ASSERT_NE(fresh, nullptr);
  EXPECT_GT(fresh->map().epoch, client_->map().epoch) << "the new master's map is not newer";
  expect_all_alive();
}

// Both servers of a group die: the cascade guard keeps the second one online in the map (it
// never takes more than half a group offline at once) and logs the verdict it withheld.
TEST_P(CacheClusterTest, CascadeGuard_BothServersOfAGroupKilled_OnlyOneMarkedOffline) {
  cluster_->kill("s1");
  cluster_->kill("s2");
  // Reports, as clients would send them.
  auto real = ClusterKey::load(cluster_->key_path());
  ASSERT_TRUE(real.is_ok());
  ClusterKey clients = real->derive("clients");
  auto socket = failover::UdpSocket::bind(failover::UdpEndpoint::from(host_, 0).value());
  auto master = failover::UdpEndpoint::parse(host_ + ":" + std::to_string(base_port_));
  std::vector<std::byte> wire;
  for (int round = 0; round < 20; ++round) {
    for (const char* id : {"s1", "s2"}) {
      ControlMessage report;
      report.kind = ControlKind::kReport;
      report.flags = kFlagFromClient;
      report.subject = id;
      report.sender = "test";
      ASSERT_TRUE(encode_control(report, clients, wire).is_ok());
      (void)socket->send_to(wire, master.value());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(wait_for({"master verdict-deferred"}, 3000));
  int offline = 0;
  for (const auto& line : cluster_->lines()) {
    if (line.rfind("master offline ", 0) == 0) ++offline;
  }
  EXPECT_EQ(offline, 1) << "the guard let a whole group go offline";
  EXPECT_TRUE(cluster_->alive("master"));
  // The other group serves on.
  ASSERT_TRUE(client_->put(type_of("s3"), as_bytes("k"), as_bytes("v")).is_ok());
}

INSTANTIATE_TEST_SUITE_P(Databases, CacheClusterTest,
                         ::testing::Values(Setup{"ofi+tcp", Database::kSqlite},
                                           Setup{"ofi+tcp", Database::kPostgres},
                                           Setup{"verbs", Database::kSqlite}),
                         name_of);

// s1 stalls between its lease check and its write (cache_debug_write_delay_ms: as if frozen
// exactly there) for far longer than its lease. Meanwhile the client fails over: s1 is marked
// offline, s2 takes its types, and the client's write is acknowledged by s2; then a second write
// of the same key is. When s1 wakes, its write of the first value (an old tag: the row's last
// writer is now the second write) reaches the database. Without the fence s2 raised on taking
// the type, it would apply and silently replace the acknowledged second value.
class CacheClusterStalledWriteTest : public CacheClusterTest {
 protected:
  static constexpr int kStallMs = 1500;
  void customize(tools::LocalClusterOptions& options) override {
    options.server_tunables["s1"]["cache_debug_write_delay_ms"] = kStallMs;
  }
};

TEST_P(CacheClusterStalledWriteTest, LateWriteOfStalledOwnerFenced_AcknowledgedValueKept) {
  const std::string type = type_of("s1");
  auto first = client_->put(type, as_bytes("k"), as_bytes("first"));  // s1 stalls on it
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_TRUE(saw({"master offline s1"})) << "acknowledged before s1 was marked offline?";
  auto second = client_->put(type, as_bytes("k"), as_bytes("second"));
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_GT(second.value(), first.value());
  // s1 wakes and sends its write of "first": refused by the database.
  EXPECT_TRUE(wait_for({"cache-server s1", "write fenced"}, 3 * kStallMs))
      << cluster_->output_of("s1");
  EXPECT_TRUE(cluster_->alive("s1"));
  auto store = open_record_store(cluster_->database());
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  StoredRecord record;
  ASSERT_TRUE(store.value()->get(type, bytes("k"), record).is_ok());
  EXPECT_EQ(text(record.value), "second") << "an acknowledged write was overwritten late";
  EXPECT_EQ(record.version, second.value());
  // s1 serves again once the master re-checked it, and reads the acknowledged value.
  ASSERT_TRUE(wait_for({"master online s1"}, 10000));
  exercise_until(
      *client_, type, [&] { return !client_->in_failover_mode("s1"); }, 5000);
  auto after = client_->get(type, as_bytes("k"));
  ASSERT_TRUE(after.is_ok()) << after.status().to_string();
  EXPECT_EQ(text(after->value), "second");
  expect_all_alive();
}

INSTANTIATE_TEST_SUITE_P(Databases, CacheClusterStalledWriteTest,
                         ::testing::Values(Setup{"ofi+tcp", Database::kSqlite},
                                           Setup{"ofi+tcp", Database::kPostgres}),
                         name_of);

// A holder of the clients' key floods the master with map requests (each answer is a signed map,
// several times the request; the source address could be forged): the master answers at most
// its per-source budget (cache_client_requests_per_s, here 50) and its members, who are not
// limited, keep their leases: the cluster serves on.
class CacheClusterClientLimitTest : public CacheClusterTest {
 protected:
  static constexpr int kPerSecond = 50;
  void customize(tools::LocalClusterOptions& options) override {
    options.tunables["cache_client_requests_per_s"] = kPerSecond;
  }
};

TEST_P(CacheClusterClientLimitTest, MapRequestFlood_AnswersBoundedPerSource_ClusterServesOn) {
  auto master = failover::UdpEndpoint::parse(host_ + ":" + std::to_string(base_port_));
  ASSERT_TRUE(master.is_ok());
  auto socket = failover::UdpSocket::bind(failover::UdpEndpoint::from(host_, 0).value());
  ASSERT_TRUE(socket.is_ok());
  auto real = ClusterKey::load(cluster_->key_path());
  ASSERT_TRUE(real.is_ok());
  ClusterKey clients = real->derive("clients");
  ControlMessage request;
  request.kind = ControlKind::kMapRequest;
  request.flags = kFlagFromClient;
  request.sender = "flooder";
  std::vector<std::byte> wire;
  std::array<std::byte, kMaxControlDatagramBytes> buffer;
  int answers = 0;
  auto drain = [&] {
    failover::UdpEndpoint from;
    while (socket->receive(buffer, &from).is_ok()) ++answers;
  };
  std::int64_t start = steady_now_ns();
  constexpr int kRequests = 3000;
  for (int i = 0; i < kRequests; ++i) {
    request.nonce = static_cast<std::uint64_t>(i + 1);
    ASSERT_TRUE(encode_control(request, clients, wire).is_ok());
    (void)socket->send_to(wire, master.value());
    if (i % 16 == 0) drain();  // keep our receive buffer from overflowing
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  drain();
  double seconds = static_cast<double>(steady_now_ns() - start) / 1e9;
  // A full bucket (one second's worth), plus what refilled while we sent.
  double bound = kPerSecond + kPerSecond * seconds + 2;
  EXPECT_GT(answers, 0);
  EXPECT_LE(answers, bound) << answers << " maps answered to " << kRequests << " requests in "
                            << seconds << " s";
  // Members are not limited: nobody lost a lease, the cluster serves on.
  EXPECT_FALSE(saw({"offline"}));
  ASSERT_TRUE(client_->put(type_of("s1"), as_bytes("k"), as_bytes("v")).is_ok());
  ASSERT_TRUE(client_->get(type_of("s3"), as_bytes("k")).is_ok());
  expect_all_alive();
}

INSTANTIATE_TEST_SUITE_P(Databases, CacheClusterClientLimitTest,
                         ::testing::Values(Setup{"ofi+tcp", Database::kSqlite}), name_of);

// The cluster in network namespaces (tools/bench/netns_lab.hpp; needs root and iproute2): s1 in
// host 0, the master and the other servers in host 1, this test process (its clients) in host 2.
// So a link can fail under s1 alone, or between s1 and the clients only, while every process
// keeps running and nothing tells anyone (no FIN, RST or ICMP).
class CacheClusterNetns : public ClusterTest {
 protected:
  static constexpr int kVictimHost = 0;  // s1
  static constexpr int kClusterHost = 1;
  static constexpr int kClientHost = 2;

  void SetUp() override {
    auto lab = bench::NetnsLab::create();
    if (!lab) GTEST_SKIP() << "skipped: " << lab.status().to_string();
    lab_ = std::move(lab.value());
    // Before any client, socket or thread exists: each is made in the namespace of the thread
    // that makes it (threads inherit it), and never moves.
    ASSERT_TRUE(lab_->enter(kClientHost).is_ok());
    tools::LocalClusterOptions options;
    options.host = lab_->host_ip(kClusterHost);
    options.host_of["s1"] = lab_->host_ip(kVictimHost);
    options.prefix_of["s1"] = lab_->exec_prefix(kVictimHost);
    for (const char* id : {"master", "s2", "s3", "s4"}) {
      options.prefix_of[id] = lab_->exec_prefix(kClusterHost);
    }
    // A generous verification (30 ms by default): these tests are about whom the master can
    // reach, and a server starved of CPU on a busy 2-vCPU machine must not pass for a cut one.
    options.tunables["cache_verify_ms"] = 500;
    start_cluster(options);
  }
  void TearDown() override {
    // The clients and the daemons go before their namespaces do.
    client_.reset();
    cluster_.reset();
  }

  std::unique_ptr<bench::NetnsLab> lab_;
};

// A partition between s1 and one client only: the master and s1's group still reach s1. The
// client's calls to s1 hang, so it enters failover mode for s1 and reports it; the master probes
// s1, reaches it, and must not mark it offline — that would take a serving server out of the
// map for every client because one of them cannot reach it. Meanwhile the client's requests for
// s1's types go to s2, which forwards them to s1, and the application sees no error. Mended, the
// client's next ping after a window reaches s1 and it leaves failover mode.
TEST_F(CacheClusterNetns, ServerCutOffFromOneClient_VerifiedNeverMarkedOffline) {
  auto load = start_load(51);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::int64_t cut_at = steady_now_ns();
  ASSERT_TRUE(lab_->cut_between(kVictimHost, kClientHost).is_ok());
  EXPECT_TRUE(load->wait_event("failover-enter s1", cut_at, 5000))
      << "the client did not notice it was cut off from s1";
  EXPECT_TRUE(load->wait_event("report s1", cut_at, 5000)) << "the client did not report s1";
  ASSERT_TRUE(wait_for({"master verified-alive s1"}, 5000)) << "the master did not verify s1";
  EXPECT_TRUE(saw({"master report s1", "from load"}));
  // Several failover windows with the cut still there: every ping of s1 from the client fails,
  // and the client stays in failover mode, reporting again; the master's answer stays the same.
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  EXPECT_TRUE(cluster_->alive("master") && cluster_->alive("s1"));
  std::int64_t mended_at = steady_now_ns();
  ASSERT_TRUE(lab_->mend_between(kVictimHost, kClientHost).is_ok());
  EXPECT_TRUE(load->wait_event("failover-leave s1", mended_at, 5000))
      << "the client stayed away from s1 after the link was mended";
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  finish(*load);
  EXPECT_FALSE(saw({"master verdict-offline s1"})) << "a verdict was given on a reachable server";
  EXPECT_FALSE(saw({"master verdict-deferred s1"})) << "a verdict was given on a reachable server";
  EXPECT_FALSE(saw({"master offline s1"})) << "a server the master reaches was marked offline";
  expect_all_alive();
}

// s1's link is down for everyone: the master's probes go unanswered, so it marks s1 offline
// (silent) once the lease it granted s1 ran out — s1 cannot renew it, so by then it serves
// nothing from its cache — and s2 serves s1's types. Mended, s1 asks for a lease again, the
// master re-checks it, it comes back through the returning barrier (having dropped the cache it
// held from before: others wrote its types meanwhile), and the client leaves failover mode.
TEST_F(CacheClusterNetns, ServerCutOffFromAll_MarkedOfflineThenOnlineWhenMended) {
  auto load = start_load(61);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::int64_t cut_at = steady_now_ns();
  ASSERT_TRUE(lab_->cut(kVictimHost).is_ok());
  ASSERT_TRUE(wait_for({"master offline s1"}, 5000)) << "no verdict";
  EXPECT_TRUE(saw({"master verdict-offline s1", "silent"}));
  EXPECT_TRUE(load->wait_event("failover-enter s1", cut_at, 5000));
  EXPECT_TRUE(wait_for({"cache-server s2 map", "s1 offline"}, 2000));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::int64_t mended_at = steady_now_ns();
  ASSERT_TRUE(lab_->mend(kVictimHost).is_ok());
  ASSERT_TRUE(wait_for({"master online s1"}, 5000)) << "s1 did not come back after the mend";
  EXPECT_TRUE(saw({"master returning s1"}));
  EXPECT_TRUE(wait_for({"cache-server s1", "marked offline meanwhile"}, 2000));
  EXPECT_TRUE(load->wait_event("failover-leave s1", mended_at, 5000))
      << "the client stayed away from s1 after it came back";
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  finish(*load);
  expect_all_alive();
}

// The README's main command: the demo runs its story to the end and says it held.
TEST(CacheDemo, KilledAndRestartedUnderLoad_Held_TimelineAndPlot) {
  std::string png = ::testing::TempDir() + "demo-" + std::to_string(::getpid()) + ".png";
  std::string json = png + ".json";
  std::string command = std::string(VIADUCT_TOOL) + " demo --base-port " +
                        std::to_string(testing::test_port_block()) + " --png " + png + " --json " +
                        json + " > " + png + ".out 2>&1";
  int status = std::system(command.c_str());
  std::ifstream out(png + ".out");
  std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  ASSERT_EQ(status, 0) << text;
  for (const char* step : {"failover-enter s1", "verdict-offline s1", "group-notified s1",
                           "temporary: serving the types of s1", "returning s1", "online s1",
                           "failover-leave s1", "errors 0, stale reads 0", "=== held"}) {
    EXPECT_NE(text.find(step), std::string::npos) << "no '" << step << "' in:\n" << text;
  }
  EXPECT_TRUE(std::ifstream(png).good()) << "no plot";
  std::remove(png.c_str());
  std::remove(json.c_str());
  std::remove((png + ".out").c_str());
}

}  // namespace
}  // namespace viaduct::cluster::cache
