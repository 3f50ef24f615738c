// Active/passive partners as real `viaduct serve` processes, killed (SIGKILL) and frozen
// (SIGSTOP/SIGCONT); the name lookup and client connections observed from this process. Each
// test runs once per back end: ofi+tcp on 127.0.0.1 (label failover) and verbs on an rxe device
// (label rdma, run in the Soft-RoCE guest; elsewhere "skipped: no RDMA device"). The lookup is
// UDP on 127.0.0.1 either way.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <thread>

#include "cluster/member_auth.hpp"
#include "cluster/partner_ping.hpp"
#include "cluster/partner_protocol.hpp"
#include "cluster/service_server.hpp"
#include "failover/lookup_client.hpp"
#include "failover/session.hpp"
#include "tests/test_ports.hpp"
#include "tools/bench/child_process.hpp"
#include "tools/bench/netns_lab.hpp"
#include "tools/bench/scratch_key.hpp"
#include "transport/channel.hpp"
#include "transport/clock.hpp"
#include "transport/frame.hpp"
#include "transport/verbs/verbs_domain.hpp"

namespace viaduct::cluster {
namespace {

using Clock = std::chrono::steady_clock;

// How long a test waits for the passive to hold the active's state. A wait, not a bound: it ends
// at the line. Generous for the Soft-RoCE guest (TCG), where a verbs connect takes 25-55 ms
// against the replica connect's 50 ms budget, so the first attempts can fail and retry.
constexpr int kInSyncWaitMs = 20000;

// A child process whose stdout lines we can wait for (shared with the failover bench).
using Proc = viaduct::bench::ChildProcess;

// The transport address prefix of the back end under test ("ofi+tcp://127.0.0.1" or
// "verbs://HOST"), or empty when this machine cannot run it.
std::string transport_prefix(const std::string& scheme) {
  if (scheme == "ofi+tcp") return "ofi+tcp://127.0.0.1";
  if (!transport::verbs::probe().usable) return {};
  const char* host = std::getenv("VIADUCT_TEST_VERBS_HOST");
  return "verbs://" + std::string(host != nullptr ? host : "10.77.0.1");
}

// The back end of the current test: set by each suite's SetUp.
std::string g_prefix;

// Twenty probed free ports per test process, below the ephemeral range (tests/test_ports.hpp).
std::uint16_t test_port_base() {
  return viaduct::testing::test_port_block();
}

struct Pair {
  std::uint16_t base = 0;
  std::string a_uri, b_uri;
  std::string a_host = "127.0.0.1", b_host = "127.0.0.1";  // where the lookup responders listen
  std::uint16_t a_lookup, b_lookup;
  std::unique_ptr<Proc> a, b;

  explicit Pair(const std::string& service = "echo") { start(service, g_prefix, g_prefix, {}, {}); }
  // At ports base..base+3 instead of the per-process ones.
  Pair(const std::string& service, std::uint16_t base_port) : base(base_port) {
    start(service, g_prefix, g_prefix, {}, {});
  }
  // Servers at explicit hosts, started through an argv prefix (e.g. `ip netns exec NS`).
  Pair(const std::string& a_at, const std::string& b_at, const std::vector<std::string>& a_prefix,
       const std::vector<std::string>& b_prefix) {
    a_host = a_at;
    b_host = b_at;
    start("echo", "ofi+tcp://" + a_at, "ofi+tcp://" + b_at, a_prefix, b_prefix);
  }
  void start(const std::string& service, const std::string& a_transport,
             const std::string& b_transport, std::vector<std::string> a_argv,
             std::vector<std::string> b_argv) {
    // Distinct ports per test process (ctest runs tests as separate processes), unless preset.
    if (base == 0) base = test_port_base();
    a_uri = a_transport + ":" + std::to_string(base);
    b_uri = b_transport + ":" + std::to_string(base + 1);
    a_lookup = static_cast<std::uint16_t>(base + 2);
    b_lookup = static_cast<std::uint16_t>(base + 3);
    std::vector<std::string> a_args{
        VIADUCT_TOOL, "serve",  "--name",        "ORDERS",
        "--role",     "active", "--listen",      a_uri,
        "--partner",  b_uri,    "--lookup",      a_host + ":" + std::to_string(a_lookup),
        "--service",  service,  "--cluster-key", bench::scratch_key_file()};
    std::vector<std::string> b_args{
        VIADUCT_TOOL, "serve",   "--name",        "ORDERS",
        "--role",     "passive", "--listen",      b_uri,
        "--partner",  a_uri,     "--lookup",      b_host + ":" + std::to_string(b_lookup),
        "--service",  service,   "--cluster-key", bench::scratch_key_file()};
    a_argv.insert(a_argv.end(), a_args.begin(), a_args.end());
    b_argv.insert(b_argv.end(), b_args.begin(), b_args.end());
    a_command = a_argv;
    b_command = b_argv;
    a = std::make_unique<Proc>(a_argv);
    b = std::make_unique<Proc>(b_argv);
  }
  // Kills the passive and starts it again, with the same command line (it restarts passive).
  void restart_b() {
    b->kill_hard();
    b = std::make_unique<Proc>(b_command);
  }
  std::vector<std::string> a_command, b_command;
  std::vector<failover::UdpEndpoint> both() const {
    return {failover::UdpEndpoint::from(a_host, a_lookup).value(),
            failover::UdpEndpoint::from(b_host, b_lookup).value()};
  }
  failover::UdpEndpoint only_a() const {
    return failover::UdpEndpoint::from(a_host, a_lookup).value();
  }
};

failover::SessionOptions session_options_for(const Pair& p) {
  return {"ORDERS", p.both(), 64, bench::scratch_key().service_public_key("ORDERS")};
}

std::uint16_t port_of(const failover::ssrp::InstanceRecord& r) {
  return r.tcp_port != 0 ? r.tcp_port : r.via_port;
}

class BackendTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    g_prefix = transport_prefix(GetParam());
    if (g_prefix.empty()) GTEST_SKIP() << "skipped: no RDMA device";
  }
};
std::string backend_name(const ::testing::TestParamInfo<const char*>& info) {
  return std::string(info.param) == "verbs" ? "verbs" : "ofi_tcp";
}

Result<std::unique_ptr<transport::Channel>> connect_client(const std::string& uri,
                                                           const std::string& name,
                                                           std::uint64_t epoch,
                                                           std::string* reject_reason) {
  auto a = transport::Address::parse(uri).value();
  static std::unique_ptr<transport::Domain> domain = std::move(transport::Domain::open(a).value());
  if (domain->backend() != a.backend) domain = std::move(transport::Domain::open(a).value());
  auto hello = encode_hello_app({HelloKind::kClient, epoch, name});
  transport::ChannelOptions options;
  options.hello_app = hello;
  std::vector<std::byte> reason;
  auto ch = transport::Channel::connect(*domain, a, options, 2000, &reason);
  if (reject_reason != nullptr) {
    reject_reason->assign(reinterpret_cast<const char*>(reason.data()), reason.size());
    auto nul = reject_reason->find('\0');
    if (nul != std::string::npos) reject_reason->resize(nul);
  }
  return ch;
}

using ServiceFailover = BackendTest;
INSTANTIATE_TEST_SUITE_P(Backends, ServiceFailover, ::testing::Values("ofi+tcp", "verbs"),
                         backend_name);

TEST_P(ServiceFailover, ActiveAnswersLookupAndServes_PassiveStaysSilent) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000)) << p.a->output();
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto answer = failover::lookup("ORDERS", p.both(), 3000);
  ASSERT_TRUE(answer.is_ok()) << answer.status().to_string();
  EXPECT_EQ(port_of(answer->record), p.base);
  EXPECT_EQ(answer->record.epoch, 1u);
  std::array<failover::UdpEndpoint, 1> b_only{
      failover::UdpEndpoint::from("127.0.0.1", p.b_lookup).value()};
  EXPECT_EQ(failover::lookup("ORDERS", b_only, 300).status().code(), Code::kTimeout);
  auto ch = connect_client(p.a_uri, "ORDERS", 1, nullptr);
  ASSERT_TRUE(ch.is_ok()) << ch.status().to_string();
  // (client id, seq) header, then the payload the echo service returns.
  std::byte buf[24] = {std::byte{1}, std::byte{2}};
  buf[8] = std::byte{1};  // sequence 1 (0 marks a session's control request)
  buf[16] = std::byte{0x5a};
  std::byte out[8] = {};
  auto n = ch.value()->call(std::span(buf, 24), std::span(out, 8), 3000);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(n.value(), 8u);
  EXPECT_EQ(out[0], std::byte{0x5a});
  // A request without the header gets a clear status, and the server keeps serving.
  std::uint32_t app_status = 0;
  ASSERT_TRUE(ch.value()->call(std::span(buf, 4), std::span(out, 8), 3000, &app_status).is_ok());
  EXPECT_EQ(app_status, kAppStatusBadRequest);
  // The passive refuses clients; a wrong name is refused everywhere.
  std::string reason;
  EXPECT_FALSE(connect_client(p.b_uri, "ORDERS", 1, &reason).is_ok());
  EXPECT_EQ(reason, kRejectNotActive);
  EXPECT_FALSE(connect_client(p.a_uri, "BILLING", 1, &reason).is_ok());
  EXPECT_EQ(reason, kRejectWrongName);
}

TEST_P(ServiceFailover, ActiveKilled_PassiveTakesOverWithNewerEpoch) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  ASSERT_TRUE(failover::lookup("ORDERS", p.both(), 3000).is_ok());
  p.a->kill_hard();
  ASSERT_TRUE(p.b->wait_for("took-over ORDERS epoch 2", 10000))
      << p.b->output() << "the passive's threads:\n"
      << p.b->thread_report();
  auto answer = failover::lookup("ORDERS", p.both(), 3000);
  ASSERT_TRUE(answer.is_ok()) << answer.status().to_string();
  EXPECT_EQ(port_of(answer->record), p.base + 1);
  EXPECT_EQ(answer->record.epoch, 2u);
  auto ch = connect_client(p.b_uri, "ORDERS", 2, nullptr);
  ASSERT_TRUE(ch.is_ok()) << ch.status().to_string();
  std::byte buf[20] = {std::byte{9}};
  EXPECT_TRUE(ch.value()->call(std::span(buf, 20), std::span(buf, 20), 3000).is_ok());
}

// One request to the counter service on a raw client connection: (client id, seq) header, then
// the u64 to add. The new total, or the call's error; `app_status` gets the server's status.
Result<std::uint64_t> counter_call(transport::Channel& ch, std::uint64_t client_id,
                                   std::uint64_t seq, std::uint64_t add,
                                   std::uint32_t* app_status = nullptr) {
  std::array<std::byte, 24> request{};
  std::memcpy(request.data(), &client_id, 8);
  std::memcpy(request.data() + 8, &seq, 8);
  std::memcpy(request.data() + 16, &add, 8);
  std::array<std::byte, 8> answer{};
  std::uint32_t status = 0;
  auto n = ch.call(request, answer, 3000, &status);
  if (app_status != nullptr) *app_status = status;
  if (!n) return n.status();
  if (status != 0 || n.value() != 8) return Status(Code::kMalformed, "no total in the answer");
  std::uint64_t total = 0;
  std::memcpy(&total, answer.data(), 8);
  return total;
}

// The reply cache travels with the snapshot: a request executed before the passive (re)joined,
// whose answer its client never got, is answered from the cache after a takeover; before, the new
// active executed it a second time.
TEST_P(ServiceFailover, RestartedPassiveGetsTheReplyCache_ResendAfterTakeoverNotExecutedTwice) {
  Pair p("counter");
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto ch = connect_client(p.a_uri, "ORDERS", 1, nullptr);
  ASSERT_TRUE(ch.is_ok()) << ch.status().to_string();
  auto first = counter_call(*ch.value(), 0x77, 1, 5);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first.value(), 5u);
  // A new passive: it learns the state (and now the reply cache) from the snapshot only.
  p.restart_b();
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", 10000)) << p.b->output();
  p.a->kill_hard();
  ASSERT_TRUE(p.b->wait_for("took-over ORDERS", 10000))
      << p.b->output() << "the passive's threads:\n"
      << p.b->thread_report();
  auto again = connect_client(p.b_uri, "ORDERS", 2, nullptr);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  // The re-send of (0x77, 1): the cached answer, not a second addition.
  auto resent = counter_call(*again.value(), 0x77, 1, 5);
  ASSERT_TRUE(resent.is_ok()) << resent.status().to_string();
  EXPECT_EQ(resent.value(), 5u);
  auto next = counter_call(*again.value(), 0x77, 2, 0);
  ASSERT_TRUE(next.is_ok()) << next.status().to_string();
  EXPECT_EQ(next.value(), 5u);
  EXPECT_TRUE(p.b->wait_exit(0) == std::nullopt) << "the new active died: " << p.b->output();
}

TEST_P(ServiceFailover, ActiveFrozen_PassiveTakesOver_OldActiveStepsDownOnWake) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  ASSERT_TRUE(failover::lookup("ORDERS", p.both(), 3000).is_ok());
  p.a->signal(SIGSTOP);
  ASSERT_TRUE(p.b->wait_for("took-over ORDERS epoch 2", 10000))
      << p.b->output() << "the passive's threads:\n"
      << p.b->thread_report();
  p.a->signal(SIGCONT);
  ASSERT_TRUE(p.a->wait_for("stepped-down ORDERS epoch 2", 10000)) << p.a->output();
  // Never two actives: the old one no longer answers lookups nor accepts clients.
  std::array<failover::UdpEndpoint, 1> a_only{p.only_a()};
  EXPECT_EQ(failover::lookup("ORDERS", a_only, 500).status().code(), Code::kTimeout)
      << "a:\n"
      << p.a->output() << "b:\n"
      << p.b->output();
  std::string reason;
  EXPECT_FALSE(connect_client(p.a_uri, "ORDERS", 2, &reason).is_ok());
  EXPECT_EQ(reason, kRejectNotActive);
  auto answer = failover::lookup("ORDERS", p.both(), 3000);
  ASSERT_TRUE(answer.is_ok());
  EXPECT_EQ(port_of(answer->record), p.base + 1);
}

// True while the child runs (not exited, not killed): a test that waited for a log line also
// checks the process survived it.
bool alive(const Proc& proc) {
  int status = 0;
  return waitpid(proc.pid(), &status, WNOHANG) == 0;
}

// Hostile peer (issue 9, finding 1): a client hello with a huge epoch used to make the active
// step down for good. A client never changes a server's epoch: it is refused as stale, alone.
TEST_P(ServiceFailover, ClientHelloWithHugeEpoch_RefusedAsStale_ServerNeverStepsDown) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  std::string reason;
  EXPECT_FALSE(connect_client(p.a_uri, "ORDERS", INT64_MAX, &reason).is_ok());
  EXPECT_EQ(reason, kRejectStaleEpoch);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(p.a->output().find("stepped-down"), std::string::npos) << p.a->output();
  EXPECT_TRUE(alive(*p.a));
  auto answer = failover::lookup("ORDERS", p.both(), 3000);
  ASSERT_TRUE(answer.is_ok());
  EXPECT_EQ(answer->record.epoch, 1u);
  auto client = connect_client(p.a_uri, "ORDERS", 1, nullptr);
  EXPECT_TRUE(client.is_ok()) << client.status().to_string();
}

// Hostile peer (findings 2, 3, 9): a connection that claims to be the partner but does not hold
// the cluster key can neither replicate (forged state, forged reply-cache answers), nor announce
// an epoch, nor crash a server that has clients connected. It is cut off.
TEST_P(ServiceFailover, FakePartnerWithoutKey_CutOff_NoStateChange_NoCrash) {
  Pair p("counter");
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto client = connect_client(p.a_uri, "ORDERS", 1, nullptr);  // a client stays connected
  ASSERT_TRUE(client.is_ok());
  for (const std::string& target : {p.a_uri, p.b_uri}) {
    auto a = transport::Address::parse(target).value();
    auto domain = transport::Domain::open(a).value();
    auto hello = encode_hello_app({HelloKind::kPartner, UINT64_MAX / 2, "ORDERS"});
    transport::ChannelOptions options;
    options.hello_app = hello;
    auto fake = transport::Channel::connect(*domain, a, options, 2000);
    ASSERT_TRUE(fake.is_ok()) << fake.status().to_string();
    // A forged snapshot setting the counter to 3,736,928,565, at a huge epoch.
    std::uint64_t forged_total = 3'736'928'565ull;
    std::vector<std::byte> frame;
    encode_replica({ReplicaKind::kSnapshot,
                    UINT64_MAX / 2,
                    99,
                    0,
                    0,
                    0,
                    {},
                    std::as_bytes(std::span(&forged_total, 1))},
                   frame);
    std::array<std::byte, 64> out;
    std::uint32_t app_status = 0;
    auto r = fake.value()->call(frame, out, 2000, &app_status);
    EXPECT_TRUE(!r.is_ok() || app_status == kAppStatusBadRequest);
    // A handshake with another cluster's key fails too.
    auto again = transport::Channel::connect(*domain, a, options, 2000);
    ASSERT_TRUE(again.is_ok());
    std::array<std::byte, kClusterKeyBytes> other{};
    other.fill(std::byte{7});
    EXPECT_FALSE(authenticate_member_connection(*again.value(), ClusterKey::from_bytes(other),
                                                "ORDERS", 2000)
                     .is_ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(alive(*p.a)) << p.a->output();
  EXPECT_TRUE(alive(*p.b)) << p.b->output();
  EXPECT_EQ(p.a->output().find("stepped-down"), std::string::npos) << p.a->output();
  // The passive's state is the active's, not the forgery: after a kill it serves the real total.
  auto session = failover::Session::open(session_options_for(p));
  ASSERT_TRUE(session.is_ok());
  std::uint64_t add = 5, total = 0;
  std::byte out[8];
  ASSERT_TRUE(session.value()->call(std::as_bytes(std::span(&add, 1)), out).is_ok());
  p.a->kill_hard();
  ASSERT_TRUE(p.b->wait_for("took-over ORDERS", 10000))
      << p.b->output() << "the passive's threads:\n"
      << p.b->thread_report();
  add = 0;
  ASSERT_TRUE(session.value()->call(std::as_bytes(std::span(&add, 1)), out).is_ok());
  std::memcpy(&total, out, 8);
  EXPECT_EQ(total, 5u);
}

// Hostile peer (finding 12, and 3): forged and replayed-looking partner datagrams (another
// cluster's key, garbage, a claim to be active at a newer epoch) sprayed at the passive's link
// while the active is killed: ignored, and the takeover is not delayed.
TEST_P(ServiceFailover, ForgedPartnerDatagrams_IgnoredTakeoverNotDelayed) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto b_addr = transport::Address::parse(p.b_uri).value();
  auto to = failover::UdpEndpoint::from(b_addr.host, b_addr.port).value();
  auto sock = failover::UdpSocket::bind(failover::UdpEndpoint::from(b_addr.host, 0).value());
  ASSERT_TRUE(sock.is_ok());
  std::array<std::byte, kClusterKeyBytes> other{};
  other.fill(std::byte{9});
  ClusterKey wrong = ClusterKey::from_bytes(other);
  std::array<std::byte, kPartnerDatagramBytes> forged;
  encode_partner_datagram(
      {PartnerMessage::kPong, kPartnerFlagActive | kPartnerFlagDropSync, 1000, 1, 1, "ORDERS"},
      wrong, forged);
  std::atomic<bool> stop{false};
  std::thread sprayer([&] {
    std::array<std::byte, 7> garbage{};
    while (!stop.load()) {
      (void)sock.value().send_to(forged, to);
      (void)sock.value().send_to(garbage, to);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(p.b->output().find("took-over"), std::string::npos) << p.b->output();
  auto t0 = Clock::now();
  p.a->kill_hard();
  bool took_over = p.b->wait_for("took-over ORDERS epoch 2", 10000);
  auto took = Clock::now() - t0;
  stop = true;
  sprayer.join();
  ASSERT_TRUE(took_over) << p.b->output();
  EXPECT_TRUE(alive(*p.b));
  // Generous (speed lives in bench/): forged pings once delayed this by 1.7-6 s.
  EXPECT_LT(took, std::chrono::milliseconds(1500));
}

// The passive frozen past the active's keep-alive budget: the active drops its connections,
// and the passive, when it wakes, finds them closed. A close it did not see coming, from a
// partner it has not heard for a while, is no crash: it must reconnect and find the active
// alive, not take over.
TEST_P(ServiceFailover, PassiveFrozenPastKeepalive_WakesAndLeavesTheActiveAlone) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  p.b->signal(SIGSTOP);
  std::this_thread::sleep_for(
      std::chrono::milliseconds(2 * transport::tunables::channel_keepalive_interval_ms.get() *
                                    transport::tunables::channel_keepalive_missed_limit.get() +
                                200));
  p.b->signal(SIGCONT);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(p.b->output().find("took-over"), std::string::npos) << p.b->output();
  EXPECT_EQ(p.a->output().find("stepped-down"), std::string::npos) << p.a->output();
  auto answer = failover::lookup("ORDERS", p.both(), 3000);
  ASSERT_TRUE(answer.is_ok());
  EXPECT_EQ(port_of(answer->record), p.base);
  EXPECT_EQ(answer->record.epoch, 1u);
}

// Hostile peer (finding 6): the reply cache took the client id from each request, so one
// connection cycling 4096 ids evicted every real client, and a request re-sent after a failover
// was executed twice. The id is bound to the connection by its first request: a connection that
// sends a second id is cut off at once, and the real client's answer stays cached.
TEST_P(ServiceFailover, ConnectionCyclingClientIds_CutOff_OtherClientsAnswerKept) {
  Pair p("counter");
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto client = connect_client(p.a_uri, "ORDERS", 1, nullptr);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  constexpr std::uint64_t kClient = 0x5eed;
  auto first = counter_call(*client.value(), kClient, 1, 5);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first.value(), 5u);

  auto hostile = connect_client(p.a_uri, "ORDERS", 1, nullptr);
  ASSERT_TRUE(hostile.is_ok()) << hostile.status().to_string();
  auto own = counter_call(*hostile.value(), 1000, 1, 1);  // its first id binds the connection
  ASSERT_TRUE(own.is_ok()) << own.status().to_string();
  EXPECT_EQ(own.value(), 6u);
  // 5000 more ids, each of which would have taken a cache slot: the first one is refused and the
  // connection closed; what follows fails on the closed connection (or is refused).
  std::uint64_t executed = 0;
  std::uint32_t app_status = 0;
  auto second = counter_call(*hostile.value(), 1001, 1, 1, &app_status);
  EXPECT_FALSE(second.is_ok());
  EXPECT_EQ(app_status, kAppStatusBadRequest);
  for (std::uint64_t id = 1002; id < 6002; ++id) {
    auto r = counter_call(*hostile.value(), id, 1, 1);
    if (r.is_ok()) ++executed;
    if (!r.is_ok() && r.status().code() != Code::kMalformed) break;  // the connection is gone
  }
  EXPECT_EQ(executed, 0u);

  // The real client re-sends its request (as after a failover): answered from the cache, not
  // executed again; and nothing the hostile connection sent after its first id was executed.
  auto resent = counter_call(*client.value(), kClient, 1, 5);
  ASSERT_TRUE(resent.is_ok()) << resent.status().to_string();
  EXPECT_EQ(resent.value(), 5u) << "re-sent request executed again: its cached answer was evicted";
  auto next = counter_call(*client.value(), kClient, 2, 0);
  ASSERT_TRUE(next.is_ok()) << next.status().to_string();
  EXPECT_EQ(next.value(), 6u);
  EXPECT_TRUE(alive(*p.a)) << p.a->output();
}

// Finding 2, the ordinary path: the same use-after-free (clients closed while the server loop
// iterated over them) crashed an active that stepped down with clients connected after a
// SIGSTOP/SIGCONT; the "stepped-down" line came before the crash. Here several clients stay
// connected across the freeze: the old active steps down, closes them, and keeps running.
TEST_P(ServiceFailover, ActiveFrozenWithClientsConnected_StepsDownOnWake_NoCrash) {
  Pair p("counter");
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  std::vector<std::unique_ptr<transport::Channel>> clients;
  for (std::uint64_t id = 1; id <= 8; ++id) {
    auto c = connect_client(p.a_uri, "ORDERS", 1, nullptr);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    ASSERT_TRUE(counter_call(*c.value(), id, 1, 1).is_ok());
    clients.push_back(std::move(c.value()));
  }
  p.a->signal(SIGSTOP);
  ASSERT_TRUE(p.b->wait_for("took-over ORDERS epoch 2", 10000))
      << p.b->output() << "the passive's threads:\n"
      << p.b->thread_report();
  p.a->signal(SIGCONT);
  ASSERT_TRUE(p.a->wait_for("stepped-down ORDERS epoch 2", 10000)) << p.a->output();
  // The clients' requests to the old active now fail (closed or refused), none is executed there.
  for (std::size_t i = 0; i < clients.size(); ++i) {
    auto r = counter_call(*clients[i], i + 1, 2, 1);
    EXPECT_FALSE(r.is_ok()) << "the old active still executes requests";
  }
  // Its log goes on after the step-down: it is still running, not dead of the close.
  ASSERT_TRUE(failover::lookup("ORDERS", p.both(), 3000).is_ok());
  EXPECT_TRUE(alive(*p.a)) << p.a->output();
  std::string reason;
  EXPECT_FALSE(connect_client(p.a_uri, "ORDERS", 2, &reason).is_ok());
  EXPECT_EQ(reason, kRejectNotActive);
  EXPECT_TRUE(alive(*p.a)) << p.a->output();
}

}  // namespace
}  // namespace viaduct::cluster

namespace viaduct::cluster {
namespace {

// A steady async load through a failover::Session; `on_progress(done)` may break things midway.
struct LoadResult {
  std::uint64_t answered = 0, errors = 0, wrong = 0, doubled = 0;
  Status first_error;
};
template <typename F>
LoadResult run_load(failover::Session& session, std::uint64_t total, std::uint32_t depth,
                    F on_progress, bool echo = true) {
  struct Ctx {
    LoadResult* result;
    std::uint64_t seq;
    bool echo = true;
    int answers = 0;
  };
  LoadResult result;
  std::vector<Ctx> ctx(total);
  auto on_response = [](void* user, const transport::Response& r) {
    auto* c = static_cast<Ctx*>(user);
    if (++c->answers > 1) ++c->result->doubled;
    if (!r.status) {
      if (c->result->errors++ == 0) c->result->first_error = r.status;
      return;
    }
    std::uint64_t echoed = 0;
    if (r.payload.size() == 8) std::memcpy(&echoed, r.payload.data(), 8);
    if (c->echo && echoed != c->seq) ++c->result->wrong;
    ++c->result->answered;
  };
  std::uint64_t issued = 0;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (result.answered + result.errors < total && Clock::now() < deadline) {
    while (issued < total && issued - (result.answered + result.errors) < depth) {
      ctx[issued] = {&result, issued, echo, 0};
      std::uint64_t payload = issued;
      auto bytes = std::as_bytes(std::span(&payload, 1));
      if (!session.call_async(bytes, on_response, &ctx[issued]).is_ok()) break;
      ++issued;
    }
    session.poll();
    on_progress(result.answered);
  }
  return result;
}

// Sets a tunable for one test and puts its default back after it, pass or fail.
class TunableOverride {
 public:
  TunableOverride(Tunable& tunable, std::int64_t value) : tunable_(tunable) {
    EXPECT_TRUE(tunable_.set(value).is_ok());
  }
  ~TunableOverride() { (void)tunable_.set(tunable_.default_value()); }
  TunableOverride(const TunableOverride&) = delete;
  TunableOverride& operator=(const TunableOverride&) = delete;

 private:
  Tunable& tunable_;
};

using SessionFailover = BackendTest;
INSTANTIATE_TEST_SUITE_P(Backends, SessionFailover, ::testing::Values("ofi+tcp", "verbs"),
                         backend_name);

failover::SessionOptions session_options(const Pair& p) {
  return {"ORDERS", p.both(), 64, bench::scratch_key().service_public_key("ORDERS")};
}

// Sends `total` requests (depth 8) through a fresh session and SIGKILLs the active a third of
// the way in, once `ready` holds. The application must see no error and every request answered
// exactly once, after exactly one failover.
std::unique_ptr<failover::Session> kill_active_under_load(
    Pair& p, std::uint64_t total, bool echo = true,
    const std::function<bool(failover::Session&)>& ready = {}) {
  auto opened = failover::Session::open(session_options(p));
  EXPECT_TRUE(opened.is_ok());
  if (!opened) return nullptr;
  auto session = std::move(opened.value());
  bool killed = false;
  auto r = run_load(
      *session, total, 8,
      [&](std::uint64_t done) {
        if (!killed && done >= total / 3 && (!ready || ready(*session))) {
          p.a->kill_hard();
          killed = true;
        }
      },
      echo);
  EXPECT_TRUE(killed);
  EXPECT_EQ(r.errors, 0u) << r.first_error.to_string();
  EXPECT_EQ(r.answered, total);
  EXPECT_EQ(r.wrong + r.doubled, 0u);
  EXPECT_EQ(session->failovers(), 1u)
      << "last failover: lookups " << session->last_failover().lookups << " from_probe "
      << session->last_failover().from_probe << " standby " << session->last_failover().used_standby
      << "\na:\n"
      << p.a->output() << "b:\n"
      << p.b->output();
  return session;
}

// One synchronous call to the echo service: the value echoed, or the call's error.
Result<std::uint64_t> echo_call(failover::Session& session, std::uint64_t value) {
  std::byte out[8];
  auto r = session.call(std::as_bytes(std::span(&value, 1)), out);
  if (!r) return r.status();
  std::uint64_t echoed = 0;
  std::memcpy(&echoed, out, 8);
  return echoed;
}

// A session to the pair's active that has made one call.
std::unique_ptr<failover::Session> connected_session(const Pair& p) {
  auto session = failover::Session::open(session_options(p));
  EXPECT_TRUE(session.is_ok());
  if (!session) return nullptr;
  auto first = echo_call(*session.value(), 1);
  EXPECT_TRUE(first.is_ok()) << first.status().to_string();
  return first.is_ok() ? std::move(session.value()) : nullptr;
}

// A lone active server for ORDERS (no partner), as an operator would bring one back: above the
// last epoch its clients saw (`epoch`), or sessions that saw a takeover refuse it as stale.
std::unique_ptr<Proc> serve_alone(const std::string& uri, std::uint16_t lookup_port,
                                  std::uint64_t epoch = 1) {
  auto server = std::make_unique<Proc>(std::vector<std::string>{
      VIADUCT_TOOL, "serve", "--name", "ORDERS", "--role", "active", "--listen", uri, "--lookup",
      "127.0.0.1:" + std::to_string(lookup_port), "--epoch", std::to_string(epoch), "--cluster-key",
      bench::scratch_key_file()});
  EXPECT_TRUE(server->wait_for("serving ORDERS", 5000)) << server->output();
  return server;
}

// Finding 4, the session's side: a server that answers the lookup for the name but cannot prove
// it holds the service's key (here a real `viaduct serve` with another cluster's secret) is never
// adopted: the call gets the clear error, the failed proof is counted, and once the real server
// answers on that lookup port the same session is served by it.
TEST_P(SessionFailover, ImpostorAnswersTheLookup_NeverAdopted_RealServerServesOnceBack) {
  std::uint16_t base = test_port_base();
  std::string impostor_uri = g_prefix + ":" + std::to_string(base);
  std::string real_uri = g_prefix + ":" + std::to_string(base + 4);
  std::uint16_t lookup_port = static_cast<std::uint16_t>(base + 2);
  std::string other_key = ::testing::TempDir() + "other-cluster-" + std::to_string(getpid());
  std::remove(other_key.c_str());
  ASSERT_EQ(std::system((std::string(VIADUCT_TOOL) + " keygen " + other_key).c_str()), 0);
  auto impostor = std::make_unique<Proc>(std::vector<std::string>{
      VIADUCT_TOOL, "serve", "--name", "ORDERS", "--role", "active", "--listen", impostor_uri,
      "--lookup", "127.0.0.1:" + std::to_string(lookup_port), "--cluster-key", other_key});
  ASSERT_TRUE(impostor->wait_for("serving ORDERS", 5000)) << impostor->output();
  failover::SessionOptions options{"ORDERS",
                                   {failover::UdpEndpoint::from("127.0.0.1", lookup_port).value()},
                                   64,
                                   bench::scratch_key().service_public_key("ORDERS")};
  options.tuning.call_deadline_ms = 1000;
  auto session = failover::Session::open(options);
  ASSERT_TRUE(session.is_ok()) << session.status().to_string();
  auto refused = echo_call(*session.value(), 7);
  EXPECT_FALSE(refused.is_ok()) << "the impostor was adopted: " << session.value()->server();
  EXPECT_GT(session.value()->proofs_failed(), 0u);
  EXPECT_NE(session.value()->server(), impostor_uri);
  impostor->kill_hard();
  auto real = serve_alone(real_uri, lookup_port);
  auto served = echo_call(*session.value(), 8);
  ASSERT_TRUE(served.is_ok()) << served.status().to_string();
  EXPECT_EQ(served.value(), 8u);
  EXPECT_EQ(session.value()->server(), real_uri);
  std::remove(other_key.c_str());
}

TEST_P(SessionFailover, ActiveKilledUnderLoad_NoErrorEveryRequestAnsweredOnce) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  // Once the session stands by at the passive (failover_warm_standby, on by default).
  auto session = kill_active_under_load(p, 6000, /*echo=*/true,
                                        [](failover::Session& s) { return s.standby_ready(); });
  ASSERT_NE(session, nullptr);
  // It continued on the standby connection, told by the partner itself that it took over: no
  // lookup and no connect during the failover.
  EXPECT_TRUE(session->last_failover().used_standby);
  EXPECT_TRUE(session->last_failover().skipped_lookup);
  EXPECT_EQ(session->last_failover().lookups, 0u);
  EXPECT_EQ(session->last_failover().connect_ms, 0.0);
  EXPECT_EQ(session->epoch(), 2u);
  EXPECT_EQ(session->server(), p.b_uri);
}

// Exactly once across a crash: a counter service (each request adds its value, each answer is
// the new total). A request the active executed whose answer died with it is answered by the new
// active from its replicated reply cache; one the active executed but never got replicated was
// never answered, and the new active (whose state never saw it) executes it. Lost or doubled
// execution shows in the final total.
TEST_P(SessionFailover, CounterKilledUnderLoad_EveryRequestExecutedExactlyOnce) {
  Pair p("counter");
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  ASSERT_TRUE(p.a->wait_for("replicating to partner", 5000)) << p.a->output();
  // Without the warm standby or the partner shortcut: this failover takes the lookup-and-connect
  // path.
  TunableOverride no_standby(failover::tunables::failover_warm_standby, 0);
  TunableOverride no_shortcut(failover::tunables::failover_skip_lookup, 0);
  constexpr std::uint64_t kRequests = 6000;  // adds 0, 1, ..., kRequests - 1
  auto session = kill_active_under_load(p, kRequests, /*echo=*/false);
  ASSERT_NE(session, nullptr);
  std::uint64_t zero = 0, total = 0;
  std::byte out[8];
  ASSERT_TRUE(session->call(std::as_bytes(std::span(&zero, 1)), out).is_ok());
  std::memcpy(&total, out, 8);
  EXPECT_EQ(total, kRequests * (kRequests - 1) / 2);
  EXPECT_FALSE(session->last_failover().used_standby);
  EXPECT_FALSE(session->last_failover().skipped_lookup);
  EXPECT_GE(session->last_failover().lookups, 1u);
}

// Without a standby connection, the failover connects straight to the partner our server named
// (its hello proves it took over with a newer epoch): no lookup.
TEST_P(SessionFailover, ActiveKilledUnderLoad_NoStandby_ConnectsStraightToNamedPartner) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  TunableOverride no_standby(failover::tunables::failover_warm_standby, 0);
  auto session = kill_active_under_load(p, 6000);
  ASSERT_NE(session, nullptr);
  EXPECT_TRUE(session->last_failover().skipped_lookup);
  EXPECT_FALSE(session->last_failover().used_standby);
  EXPECT_EQ(session->last_failover().lookups, 0u);
  EXPECT_GT(session->last_failover().connect_ms, 0.0);
  EXPECT_EQ(session->epoch(), 2u);
  EXPECT_EQ(session->server(), p.b_uri);
}

// The partner our server named is dead too, and a server comes back elsewhere: the shortcut
// finds nobody there, and the lookup (asked meanwhile) says where to go.
TEST_P(SessionFailover, NamedPartnerDeadToo_LookupFindsTheServerThatCameBack) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto session = connected_session(p);
  ASSERT_NE(session, nullptr);
  p.b->kill_hard();
  p.a->kill_hard();
  std::string c_uri = g_prefix + ":" + std::to_string(p.base + 4);
  auto back = serve_alone(c_uri, p.a_lookup, session->epoch());  // 2 after a takeover under load
  auto again = echo_call(*session, 7);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again.value(), 7u);
  EXPECT_FALSE(session->last_failover().skipped_lookup);
  EXPECT_EQ(session->server(), c_uri);
}

TEST_P(SessionFailover, ActiveFrozenUnderLoad_PassiveTakesOverNoError) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto session = failover::Session::open(session_options(p));
  ASSERT_TRUE(session.is_ok());
  bool frozen = false;
  auto r = run_load(*session.value(), 6000, 8, [&](std::uint64_t done) {
    if (!frozen && done >= 2000) {
      p.a->signal(SIGSTOP);
      frozen = true;
    }
  });
  EXPECT_EQ(r.errors, 0u) << r.first_error.to_string();
  EXPECT_EQ(r.answered, 6000u);
  EXPECT_EQ(r.wrong + r.doubled, 0u);
  EXPECT_EQ(session.value()->failovers(), 1u) << "active:\n"
                                              << p.a->output() << "passive:\n"
                                              << p.b->output();
  // Found by the hang probe (a newer epoch in a lookup answer), not by the connection breaking:
  // a frozen server's connection stays open, and the keep-alive budget is far longer.
  EXPECT_TRUE(session.value()->last_failover().from_probe);
  EXPECT_GT(session.value()->probes_sent(), 0u);
  p.a->signal(SIGCONT);
  EXPECT_TRUE(p.a->wait_for("stepped-down ORDERS", 10000)) << p.a->output();
}

TEST_P(SessionFailover, BothPartnersDown_ClearErrorThenRecoversWhenOneReturns) {
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  // A passive takes over only once it holds the active's state.
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto session = connected_session(p);
  ASSERT_NE(session, nullptr);
  p.a->kill_hard();
  p.b->kill_hard();
  auto t0 = Clock::now();
  Result<std::uint64_t> r = Status::ok();
  {
    TunableOverride short_deadline(failover::tunables::failover_call_deadline_ms, 1500);
    r = echo_call(*session, 1);
  }
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kTimeout);
  EXPECT_NE(r.status().message().find("no server answers for 'ORDERS'"), std::string::npos)
      << r.status().to_string();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10));
  // A server comes back (the old passive's address, as active, above the session's epoch: a
  // takeover before the kill, on a loaded host, leaves it at 2): the same session carries on.
  auto back = serve_alone(p.b_uri, p.b_lookup, session->epoch() + 1);
  auto again = echo_call(*session, 42);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again.value(), 42u);
}

// The operator's side of a double fault: a session that followed a takeover (epoch 2) refuses a
// server brought back at the fresh pair's epoch 1 (it may be a deposed active), and follows one
// started with --epoch above what it saw. --epoch 0 is refused at start with a clear error.
TEST_P(SessionFailover, BothPartnersLostAfterTakeover_ServerBackAtEpoch1Refused_AboveFollowed) {
  {
    std::string err_path = "/tmp/viaduct-epoch0-" + std::to_string(getpid()) + ".err";
    std::remove(err_path.c_str());
    Proc bad({VIADUCT_TOOL, "serve", "--name", "ORDERS", "--listen", g_prefix + ":1", "--epoch",
              "0", "--lookup", "off"},
             err_path);
    auto status = bad.wait_exit(10000);
    ASSERT_TRUE(status.has_value()) << bad.output();
    EXPECT_NE(*status, 0);
    std::ifstream err_file(err_path);
    std::string err((std::istreambuf_iterator<char>(err_file)), std::istreambuf_iterator<char>());
    EXPECT_NE(err.find("--epoch: Value 0 not in range"), std::string::npos) << err;
    std::remove(err_path.c_str());
  }
  Pair p;
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000));
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto session = connected_session(p);
  ASSERT_NE(session, nullptr);
  p.a->kill_hard();
  auto moved = echo_call(*session, 2);
  ASSERT_TRUE(moved.is_ok()) << moved.status().to_string();
  ASSERT_EQ(session->epoch(), 2u);
  p.b->kill_hard();
  {
    auto stale = serve_alone(p.a_uri, p.a_lookup, 1);
    TunableOverride short_deadline(failover::tunables::failover_call_deadline_ms, 1000);
    auto refused = echo_call(*session, 3);
    ASSERT_FALSE(refused.is_ok());
    EXPECT_EQ(refused.status().code(), Code::kTimeout) << refused.status().to_string();
    EXPECT_TRUE(alive(*stale)) << stale->output();
  }
  auto above = serve_alone(p.b_uri, p.b_lookup, 3);
  auto again = echo_call(*session, 4);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again.value(), 4u);
  EXPECT_EQ(session->epoch(), 3u);
  EXPECT_EQ(session->server(), p.b_uri);
}

// Two services driven by one application thread: a pair whose active fails, and a lone healthy
// server. The failing session's failover is a state machine that poll() advances without
// blocking, so the thread's calls to the healthy service go on while it runs: completions of the
// healthy service are counted while the other session fails over, and the longest gap between
// them is printed (the figure for "no stall"; speed targets live in bench/, not here).
struct TwoServicesResult {
  LoadResult failing;                  // the session whose active is killed or frozen
  std::uint64_t healthy_answered = 0;  // every answer from the healthy service
  std::uint64_t healthy_errors = 0;
  std::uint64_t healthy_during_failover = 0;  // answered while the other session failed over
  std::uint64_t healthy_during_outage = 0;    // answered from the failure until the failover ended
  std::uint64_t polls_during_failover = 0;    // poll()s of the failing session that returned
                                              // with its failover still under way
  std::uint64_t failovers_before_failure = 0;
  double longest_round_ms = 0;  // the longest poll() of the failing session over the whole run  //
                                // none expected: the pair was healthy
  double failover_ms = 0;       // the failing session's failover (noticed .. resumed)
  double longest_gap_during_ms = 0;    // between healthy completions, across the failover
  double longest_gap_before_ms = 0;    // the same, in as long a window before the failure
  double longest_failing_poll_ms = 0;  // the longest single poll() of the failing session
};

TwoServicesResult call_two_services_while_one_fails(Pair& p, failover::Session& failing,
                                                    failover::Session& healthy,
                                                    const std::function<void()>& fail) {
  TwoServicesResult out;
  struct HealthyCall {
    TwoServicesResult* out;
    failover::Session* failing;
    std::uint64_t value = 0;
    bool waiting = false;
    std::vector<std::int64_t>* completions;
    const bool* injected;
  };
  std::vector<std::int64_t> completions;  // steady_now_ns of every healthy answer
  completions.reserve(1 << 20);
  bool injected = false;
  HealthyCall hc{&out, &failing, 0, false, &completions, &injected};
  auto on_healthy = [](void* user, const transport::Response& r) {
    auto* c = static_cast<HealthyCall*>(user);
    c->waiting = false;
    std::uint64_t echoed = 0;
    if (r.payload.size() == 8) std::memcpy(&echoed, r.payload.data(), 8);
    if (!r.status || echoed != c->value) {
      ++c->out->healthy_errors;
      return;
    }
    ++c->out->healthy_answered;
    c->completions->push_back(steady_now_ns());
    if (c->failing->failing_over() && *c->injected) ++c->out->healthy_during_failover;
  };
  constexpr std::uint64_t kFailingTotal = 4000;
  std::int64_t failed_at = 0;
  std::int64_t last_round_end = steady_now_ns();
  // Each round of run_load: one poll() of the failing session, then this.
  out.failing = run_load(failing, kFailingTotal, 4, [&](std::uint64_t answered) {
    std::int64_t now = steady_now_ns();
    out.longest_round_ms =
        std::max(out.longest_round_ms, static_cast<double>(now - last_round_end) / 1e6);
    if (injected && failing.failovers() == 0) {  // from the failure to the failover's end
      out.longest_failing_poll_ms =
          std::max(out.longest_failing_poll_ms, static_cast<double>(now - last_round_end) / 1e6);
    }
    if (injected && failing.failing_over()) ++out.polls_during_failover;
    if (!hc.waiting) {
      ++hc.value;
      if (healthy.call_async(std::as_bytes(std::span(&hc.value, 1)), on_healthy, &hc).is_ok()) {
        hc.waiting = true;
      }
    }
    healthy.poll();
    if (!injected && answered >= kFailingTotal / 3 && failing.standby_ready()) {
      failed_at = steady_now_ns();
      injected = true;
      out.failovers_before_failure = failing.failovers();
      fail();
    }
    last_round_end = steady_now_ns();
  });
  EXPECT_NE(failed_at, 0) << "the failure was never injected";
  const auto& f = failing.last_failover();
  out.failover_ms = f.total_ms;
  std::int64_t begin = f.noticed_at_ns;
  std::int64_t end = begin + static_cast<std::int64_t>(f.total_ms * 1e6);
  std::int64_t window = end - failed_at;
  for (std::int64_t at : completions) {
    if (at >= failed_at && at <= end) ++out.healthy_during_outage;
  }
  for (std::size_t i = 1; i < completions.size(); ++i) {
    std::int64_t gap = completions[i] - completions[i - 1];
    // Every gap that overlaps the failover (noticed .. resumed), and the same before the failure.
    if (completions[i] >= begin && completions[i - 1] <= end) {
      out.longest_gap_during_ms =
          std::max(out.longest_gap_during_ms, static_cast<double>(gap) / 1e6);
    }
    if (completions[i] < failed_at && completions[i - 1] >= failed_at - window) {
      out.longest_gap_before_ms =
          std::max(out.longest_gap_before_ms, static_cast<double>(gap) / 1e6);
    }
  }
  (void)p;
  return out;
}

// A lone active server for `name` (no partner) at `uri`, answering lookups at `lookup_port`.
std::unique_ptr<Proc> serve_named_alone(const std::string& name, const std::string& uri,
                                        std::uint16_t lookup_port, std::uint64_t epoch = 1) {
  auto server = std::make_unique<Proc>(std::vector<std::string>{
      VIADUCT_TOOL, "serve", "--name", name, "--role", "active", "--listen", uri, "--lookup",
      "127.0.0.1:" + std::to_string(lookup_port), "--epoch", std::to_string(epoch), "--cluster-key",
      bench::scratch_key_file()});
  EXPECT_TRUE(server->wait_for("serving " + name, 5000)) << server->output();
  return server;
}

void expect_no_stall(const TwoServicesResult& r, failover::Session& failing, const Pair& p,
                     const char* how) {
  const auto& f = failing.last_failover();
  EXPECT_EQ(r.failing.errors, 0u) << r.failing.first_error.to_string() << "; session at "
                                  << failing.server() << " epoch " << failing.epoch()
                                  << ", failovers " << failing.failovers() << " ("
                                  << r.failovers_before_failure << " before the failure)";
  EXPECT_EQ(r.failing.answered, 4000u);
  EXPECT_EQ(r.failing.wrong + r.failing.doubled, 0u);
  // The failure's failover. One before it (a takeover of a pair slowed by a sanitizer or a busy
  // host) is counted by the busy-host bench, not here: the subject is the thread staying free.
  EXPECT_EQ(failing.failovers() - r.failovers_before_failure, 1u)
      << "longest round " << r.longest_round_ms
      << " ms; before the failure: " << r.failovers_before_failure << "; last: lookups "
      << f.lookups << " from_probe " << f.from_probe << " standby " << f.used_standby
      << " skipped_lookup " << f.skipped_lookup << " replayed " << f.replayed << "\na:\n"
      << p.a->output() << "b:\n"
      << p.b->output();
  EXPECT_EQ(r.healthy_errors, 0u);
  // The failing session's poll() returned while its failover was under way (a blocking failover
  // returns from one poll() with it done): the thread was free to call the healthy service
  // meanwhile. Whether an answer from it fits into a failover of a few ms depends on the machine's
  // load: the figures are printed, and the test with a long failover below counts them.
  EXPECT_GT(r.polls_during_failover, 0u);
  EXPECT_GT(r.healthy_answered, 0u);
  std::printf(
      "[ figure ] %s: failover %.2f ms (%llu polls of the failing session returned during it); "
      "healthy service: %llu answers during the failover, %llu from the failure to its end; "
      "longest gap between its answers %.3f ms across the failover vs %.3f ms in as long a "
      "window before the failure; longest poll() of the failing session %.3f ms\n",
      how, r.failover_ms, static_cast<unsigned long long>(r.polls_during_failover),
      static_cast<unsigned long long>(r.healthy_during_failover),
      static_cast<unsigned long long>(r.healthy_during_outage), r.longest_gap_during_ms,
      r.longest_gap_before_ms, r.longest_failing_poll_ms);
}

// The two services of the tests below: an echo pair (ORDERS) at base..base+3 and a lone echo
// server (STOCK) at base+10 (lookup base+11), with a session to each.
struct TwoServices {
  std::uint16_t base = test_port_base();
  Pair p{"echo", base};
  std::unique_ptr<Proc> healthy_server;
  std::unique_ptr<failover::Session> failing, healthy;

  // Both services up and the sessions open (false, with the failure reported, otherwise).
  bool start() {
    EXPECT_TRUE(p.a->wait_for("serving ORDERS", 5000)) << p.a->output();
    EXPECT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
    auto lookup = static_cast<std::uint16_t>(base + 11);
    healthy_server = serve_named_alone("STOCK", g_prefix + ":" + std::to_string(base + 10), lookup);
    auto f = failover::Session::open(session_options(p));
    auto h = failover::Session::open({"STOCK",
                                      {failover::UdpEndpoint::from("127.0.0.1", lookup).value()},
                                      4,
                                      bench::scratch_key().service_public_key("STOCK")});
    EXPECT_TRUE(f.is_ok() && h.is_ok());
    if (!f || !h) return false;
    failing = std::move(f.value());
    healthy = std::move(h.value());
    return !::testing::Test::HasFailure();
  }
};

TEST_P(SessionFailover, OneThreadTwoServices_ActiveKilled_HealthyCallsGoOnDuringFailover) {
  TwoServices t;
  ASSERT_TRUE(t.start());
  Pair& p = t.p;
  // SIGKILL without waiting for the process to be reaped here: that wait is no part of the session.
  auto r =
      call_two_services_while_one_fails(p, *t.failing, *t.healthy, [&] { p.a->signal(SIGKILL); });
  p.a->kill_hard();
  expect_no_stall(r, *t.failing, p, "SIGKILL");
  EXPECT_EQ(t.failing->server(), p.b_uri);
  EXPECT_EQ(t.healthy->failovers(), 0u);
}

TEST_P(SessionFailover, OneThreadTwoServices_ActiveFrozen_HealthyCallsGoOnDuringFailover) {
  TwoServices t;
  ASSERT_TRUE(t.start());
  Pair& p = t.p;
  auto r =
      call_two_services_while_one_fails(p, *t.failing, *t.healthy, [&] { p.a->signal(SIGSTOP); });
  p.a->signal(SIGCONT);
  expect_no_stall(r, *t.failing, p, "SIGSTOP");
  EXPECT_EQ(t.failing->server(), p.b_uri);
  EXPECT_EQ(t.healthy->failovers(), 0u);
  EXPECT_TRUE(p.a->wait_for("stepped-down ORDERS", 10000)) << p.a->output();
}

// Both partners die and a server comes back 300 ms later: the failing session's failover (the
// partner refuses, lookups go unanswered, then connect and proof) lasts that long, and the
// healthy service must keep answering all along.
TEST_P(SessionFailover, OneThreadTwoServices_NoServerFor300ms_HealthyCallsGoOnUntilOneReturns) {
  TwoServices t;
  ASSERT_TRUE(t.start());
  Pair& p = t.p;
  std::unique_ptr<Proc> back;
  std::thread returner;
  auto r = call_two_services_while_one_fails(p, *t.failing, *t.healthy, [&] {
    p.b->signal(SIGKILL);
    p.a->signal(SIGKILL);
    // Above the epoch the session saw: a lone server at epoch 1 is refused as a possibly deposed
    // active by a session that followed a takeover before the kill (ASan CI, a loaded host).
    std::uint64_t epoch = t.failing->epoch() + 1;
    // Started from another thread: starting a process and waiting for it must not hold the loop.
    returner = std::thread([&, epoch] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      back = serve_alone(p.b_uri, p.b_lookup, epoch);
    });
  });
  if (returner.joinable()) returner.join();
  p.a->kill_hard();  // reaped
  p.b->kill_hard();
  expect_no_stall(r, *t.failing, p, "both down for 300 ms");
  EXPECT_GT(r.healthy_during_failover, 0u);
  EXPECT_GE(r.failover_ms, 300.0);
  EXPECT_FALSE(t.failing->last_failover().skipped_lookup);
  EXPECT_EQ(t.failing->server(), p.b_uri);
}

// A pulled cable: the active keeps running but its link is down (veth between network
// namespaces that the test creates; needs root). Its connections stay open and no FIN arrives,
// so only the passive's takeover and the session's hang probe can find it. When the link comes
// back, the old active hears the newer epoch and steps down.
TEST(SessionFailoverNetns, ActiveCutOffUnderLoad_PassiveTakesOverNoError_OldActiveStepsDown) {
  auto lab = bench::NetnsLab::create();
  if (!lab) GTEST_SKIP() << "skipped: " << lab.status().to_string();
  ASSERT_TRUE(lab.value()->enter(2).is_ok());  // this process is the client host
  Pair p(lab.value()->host_ip(0), lab.value()->host_ip(1), lab.value()->exec_prefix(0),
         lab.value()->exec_prefix(1));
  ASSERT_TRUE(p.a->wait_for("serving ORDERS", 5000)) << p.a->output();
  ASSERT_TRUE(p.b->wait_for("in-sync ORDERS", kInSyncWaitMs)) << p.b->output();
  auto session = failover::Session::open(session_options(p));
  ASSERT_TRUE(session.is_ok());
  bool cut = false;
  auto r = run_load(*session.value(), 6000, 8, [&](std::uint64_t done) {
    if (!cut && done >= 2000) {
      ASSERT_TRUE(lab.value()->cut(0).is_ok());
      cut = true;
    }
  });
  EXPECT_TRUE(cut);
  EXPECT_EQ(r.errors, 0u) << r.first_error.to_string();
  EXPECT_EQ(r.answered, 6000u);
  EXPECT_EQ(r.wrong + r.doubled, 0u);
  EXPECT_EQ(session.value()->failovers(), 1u);
  EXPECT_TRUE(session.value()->last_failover().from_probe);
  EXPECT_EQ(session.value()->epoch(), 2u);
  ASSERT_TRUE(lab.value()->mend(0).is_ok());
  EXPECT_TRUE(p.a->wait_for("stepped-down ORDERS epoch 2", 10000)) << p.a->output();
}

}  // namespace
}  // namespace viaduct::cluster

namespace viaduct::cluster {
namespace {

// Per-instance settings (issue 9, Structure): two sessions in one process, one with a short call
// deadline and one with a long one, each keeps its own; the process-wide tunable is untouched.
TEST(SessionOptions, TwoSessionsWithDifferentDeadlines_EachKeepsItsOwn) {
  // Responders nobody listens on: every call ends with the clear error at its deadline.
  std::vector<failover::UdpEndpoint> nobody{failover::UdpEndpoint::from("127.0.0.1", 9).value()};
  failover::SessionOptions short_opts{"NOBODY", nobody, 4};
  short_opts.tuning.call_deadline_ms = 300;
  failover::SessionOptions long_opts{"NOBODY", nobody, 4};
  long_opts.tuning.call_deadline_ms = 2500;
  auto short_session = failover::Session::open(short_opts);
  auto long_session = failover::Session::open(long_opts);
  ASSERT_TRUE(short_session.is_ok() && long_session.is_ok());
  std::uint64_t value = 1;
  std::byte out[8];
  auto t0 = Clock::now();
  auto r1 = short_session.value()->call(std::as_bytes(std::span(&value, 1)), out);
  auto short_took = Clock::now() - t0;
  t0 = Clock::now();
  auto r2 = long_session.value()->call(std::as_bytes(std::span(&value, 1)), out);
  auto long_took = Clock::now() - t0;
  ASSERT_FALSE(r1.is_ok());
  ASSERT_FALSE(r2.is_ok());
  EXPECT_NE(r1.status().message().find("within 300 ms"), std::string::npos)
      << r1.status().to_string();
  EXPECT_NE(r2.status().message().find("within 2500 ms"), std::string::npos)
      << r2.status().to_string();
  EXPECT_LT(short_took, std::chrono::milliseconds(2000));
  EXPECT_GE(long_took, std::chrono::milliseconds(2000));
  EXPECT_EQ(failover::tunables::failover_call_deadline_ms.get(),
            failover::tunables::failover_call_deadline_ms.default_value());
}

}  // namespace
}  // namespace viaduct::cluster
