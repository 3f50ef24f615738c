// The lookup over real UDP on 127.0.0.1: the responder in this process, clients and garbage
// senders as plain sockets, and FreeTDS's tsql as an independent client.
#include "cluster/lookup_responder.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <thread>

#include "failover/lookup_client.hpp"

namespace viaduct::cluster {
namespace {

using failover::LookupCache;
using failover::UdpEndpoint;
using failover::UdpSocket;
namespace ssrp = failover::ssrp;

const ssrp::InstanceRecord kOrders{"127.0.0.1", "ORDERS", true, 7, 7400, 7401, "NODE1"};

struct RunningResponder {
  std::unique_ptr<LookupResponder> responder;
  std::atomic<bool> stop{false};
  std::thread thread;
  explicit RunningResponder(std::uint16_t port = 0) {
    auto r = LookupResponder::bind("127.0.0.1", port);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    if (!r) return;
    responder = std::move(r.value());
    thread = std::thread([this] { responder->run(stop); });
  }
  ~RunningResponder() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  UdpEndpoint address() const { return responder->address(); }
};

UdpSocket client() {
  return std::move(UdpSocket::bind(UdpEndpoint::from("127.0.0.1", 0).value()).value());
}

TEST(LookupResponder, ActiveName_AnsweredWithAddressPortsAndEpoch) {
  RunningResponder r;
  r.responder->set_active(kOrders);
  std::array<UdpEndpoint, 1> responders{r.address()};
  auto a = failover::lookup("orders", responders, 2000);  // names compare case-insensitively
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->record, kOrders);
  EXPECT_EQ(a->responder.to_string(), r.address().to_string());
}

TEST(LookupResponder, UnknownName_SilenceThenClearTimeoutError) {
  RunningResponder r;
  r.responder->set_active(kOrders);
  std::array<UdpEndpoint, 1> responders{r.address()};
  auto a = failover::lookup("BILLING", responders, 300);
  ASSERT_FALSE(a.is_ok());
  EXPECT_EQ(a.status().code(), Code::kTimeout);
  EXPECT_NE(a.status().message().find("no server answers for 'BILLING'"), std::string::npos);
  EXPECT_GT(r.responder->stats().unknown_name.load(), 0u);
}

TEST(LookupResponder, MalformedPackets_NoReplyAndResponderKeepsServing) {
  RunningResponder r;
  r.responder->set_active(kOrders);
  UdpSocket s = client();
  std::vector<std::vector<std::byte>> garbage;
  garbage.push_back({});
  garbage.push_back({std::byte{0x04}, std::byte{'A'}});              // no NUL
  garbage.push_back({std::byte{0xff}, std::byte{0}});                // unknown type
  garbage.push_back(std::vector<std::byte>(3000, std::byte{4}));     // oversized
  garbage.push_back({std::byte{0x05}, std::byte{0}, std::byte{0}});  // a response, not a request
  for (const auto& g : garbage) ASSERT_TRUE(s.send_to(g, r.address()).is_ok());
  EXPECT_FALSE(s.wait_readable(300)) << "the responder answered garbage";
  EXPECT_GE(r.responder->stats().malformed.load(), 4u);
  std::array<UdpEndpoint, 1> responders{r.address()};
  EXPECT_TRUE(failover::lookup("ORDERS", responders, 2000).is_ok());
}

TEST(LookupResponder, SteppedDown_NoLongerAnswersForTheName) {
  RunningResponder r;
  r.responder->set_active(kOrders);
  std::array<UdpEndpoint, 1> responders{r.address()};
  ASSERT_TRUE(failover::lookup("ORDERS", responders, 2000).is_ok());
  r.responder->set_inactive("ORDERS");
  EXPECT_EQ(failover::lookup("ORDERS", responders, 300).status().code(), Code::kTimeout);
}

TEST(LookupResponder, SeveralResponders_FirstValidAnswerWinsGarbageAndWrongNamesIgnored) {
  RunningResponder real;
  real.responder->set_active(kOrders);
  // A "spoofer" answering every lookup at once with garbage, and one answering for another name.
  UdpSocket spoofer = std::move(UdpSocket::bind(UdpEndpoint::from("127.0.0.1", 0).value()).value());
  std::atomic<bool> stop{false};
  std::thread t([&] {
    std::array<std::byte, 512> buf;
    ssrp::InstanceRecord other{"127.0.0.9", "BILLING", true, 99, 9999, 0, ""};
    auto wrong = ssrp::encode_response(std::span(&other, 1), 1024).value();
    std::vector<std::byte> junk{std::byte{5}, std::byte{200}, std::byte{0}, std::byte{'x'}};
    while (!stop) {
      if (!spoofer.wait_readable(20)) continue;
      UdpEndpoint from;
      auto n = spoofer.receive(buf, &from);
      if (!n || n.value() == 0) continue;
      (void)spoofer.send_to(junk, from);
      (void)spoofer.send_to(wrong, from);
    }
  });
  std::array<UdpEndpoint, 2> responders{spoofer.local(), real.address()};
  auto a = failover::lookup("ORDERS", responders, 2000);
  stop = true;
  t.join();
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->record, kOrders);
}

TEST(LookupResponder, FloodFromOneSource_RateLimited) {
  ASSERT_TRUE(tunables::lookup_rate_limit_per_s.set(50).is_ok());
  RunningResponder r;
  r.responder->set_active(kOrders);
  UdpSocket s = client();
  auto ex = ssrp::encode_request({ssrp::MessageType::kClientUnicastEx, {}});
  for (int i = 0; i < 500; ++i) (void)s.send_to(ex, r.address());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int replies = 0;
  std::array<std::byte, 2048> buf;
  UdpEndpoint from;
  while (s.wait_readable(50)) {
    auto n = s.receive(buf, &from);
    if (n && n.value() > 0) ++replies;
  }
  (void)tunables::lookup_rate_limit_per_s.set(tunables::lookup_rate_limit_per_s.default_value());
  EXPECT_GT(replies, 0);
  EXPECT_LT(replies, 120) << "500 requests in a burst should be capped near 50/s";
  // Some of the burst may be dropped by the kernel before the responder reads it; what matters is
  // that what it read beyond the rate went unanswered.
  EXPECT_GT(r.responder->stats().rate_limited.load(), 0u);
}

TEST(LookupCache, Put_PurgesOldEntryFirst_AndPurgeRemoves) {
  LookupCache cache;
  cache.put(kOrders);
  auto moved = kOrders;
  moved.server_name = "127.0.0.2";
  moved.epoch = 8;
  cache.put(moved);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.get("orders")->epoch, 8u);
  cache.purge("ORDERS");
  EXPECT_FALSE(cache.get("ORDERS").has_value());
}

// Interoperability: FreeTDS's tsql, which always asks UDP port 1434 on the host.
TEST(LookupResponder, FreeTdsTsql_ListsInstancesWithoutComplaint) {
  FILE* probe = popen("command -v tsql", "r");
  char path[256] = {};
  bool found = probe != nullptr && fgets(path, sizeof(path), probe) != nullptr;
  if (probe != nullptr) pclose(probe);
  ASSERT_TRUE(found)
      << "tsql not found: apt-get install freetds-bin (scripts/install-deps.sh does)";
  RunningResponder r(ssrp::kStandardPort);
  ASSERT_TRUE(r.responder) << "cannot bind 127.0.0.1:1434 (needs root and a free port)";
  r.responder->set_active(kOrders);
  r.responder->set_active({"127.0.0.1", "BILLING", true, 3, 7500, 0, ""});
  FILE* p = popen("timeout 20 tsql -LH 127.0.0.1 2>&1", "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char line[512];
  while (fgets(line, sizeof(line), p) != nullptr) out += line;
  pclose(p);
  EXPECT_NE(out.find("InstanceName ORDERS"), std::string::npos) << out;
  EXPECT_NE(out.find("InstanceName BILLING"), std::string::npos) << out;
  EXPECT_NE(out.find("tcp 7400"), std::string::npos) << out;
  EXPECT_NE(out.find("via NODE1,0:7401"), std::string::npos) << out;
  EXPECT_EQ(out.find("error"), std::string::npos) << "tsql complained:\n" << out;
}

}  // namespace
}  // namespace viaduct::cluster
