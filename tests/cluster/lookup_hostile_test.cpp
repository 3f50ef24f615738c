// The lookup against hostile senders, over real UDP on the loopback interface. The responder runs
// in this process; attackers are plain sockets.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "cluster/lookup_responder.hpp"
#include "failover/lookup_client.hpp"

namespace viaduct::cluster {
namespace {

using failover::UdpEndpoint;
using failover::UdpSocket;
namespace ssrp = failover::ssrp;
using Clock = std::chrono::steady_clock;

const ssrp::InstanceRecord kOrders{"127.0.0.1", "ORDERS", true, 7, 7400, 7401, "NODE1"};

// Sets a tunable by name and restores its value at scope exit.
class TunableOverride {
 public:
  TunableOverride(const std::string& name, std::int64_t value) {
    tunable_ = Tunable::find(name);
    EXPECT_NE(tunable_, nullptr) << "no tunable " << name;
    if (tunable_ == nullptr) return;
    old_ = tunable_->get();
    EXPECT_TRUE(tunable_->set(value).is_ok()) << name << "=" << value;
  }
  ~TunableOverride() {
    if (tunable_ != nullptr) (void)tunable_->set(old_);
  }
  TunableOverride(const TunableOverride&) = delete;
  TunableOverride& operator=(const TunableOverride&) = delete;

 private:
  Tunable* tunable_ = nullptr;
  std::int64_t old_ = 0;
};

std::unique_ptr<LookupResponder> bound_responder() {
  auto r = LookupResponder::bind("127.0.0.1", 0);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (!r) return nullptr;
  r.value()->set_active(kOrders);
  return std::move(r.value());
}

// A serving thread as ServiceServer drives it: one handle_pending() per round, with other work
// (here a short sleep) between rounds.
struct ServingLoop {
  LookupResponder* responder;
  std::atomic<bool> stop{false};
  std::thread thread;
  explicit ServingLoop(LookupResponder* r, int pause_us = 200) : responder(r) {
    thread = std::thread([this, pause_us] {
      while (!stop.load()) {
        (void)responder->handle_pending();
        std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
      }
    });
  }
  ~ServingLoop() {
    stop = true;
    thread.join();
  }
};

UdpSocket client_socket() {
  return std::move(UdpSocket::bind(UdpEndpoint::from("127.0.0.1", 0).value()).value());
}

// Finding 1: a zero-length datagram read as "nothing pending" ended the round at the first one:
// requests queued behind it waited for later rounds, one datagram per round.
TEST(LookupHostile, EmptyDatagramsBetweenRequests_DoNotEndTheRound) {
  auto responder = bound_responder();
  ASSERT_TRUE(responder);
  UdpSocket attacker = client_socket();
  UdpSocket s = client_socket();
  auto ask = ssrp::encode_request({ssrp::MessageType::kClientUnicastInst, "ORDERS"});
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(attacker.send_to({}, responder->address()));
    ASSERT_TRUE(s.send_to(ask, responder->address()));
  }
  // Three serving rounds: plenty for 20 datagrams.
  for (int round = 0; round < 3; ++round) (void)responder->handle_pending();
  int answers = 0;
  std::array<std::byte, 2048> buf;
  UdpEndpoint from;
  while (s.wait_readable(100)) {
    auto n = s.receive(buf, &from);
    if (n && n.value() > 0) ++answers;
  }
  EXPECT_EQ(answers, 10);
  EXPECT_EQ(responder->stats().malformed.load(), 10u) << "each empty datagram is malformed";
}

// Finding 1, as a user sees it: under a flood of empty datagrams, lookups waited behind a full
// socket buffer read one datagram per serving round (or timed out).
TEST(LookupHostile, EmptyDatagramFlood_EveryLookupAnsweredPromptly) {
  auto responder = bound_responder();
  ASSERT_TRUE(responder);
  ServingLoop loop(responder.get(), 1000);  // a busy server: a round every millisecond or so
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> sent{0};
  std::thread flood([&] {
    UdpSocket s = client_socket();
    auto to = responder->address();
    while (!stop.load()) {
      for (int i = 0; i < 20; ++i) {
        if (s.send_to({}, to)) ++sent;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the flood is under way
  std::array<UdpEndpoint, 1> responders{responder->address()};
  int answered = 0;
  double slowest_ms = 0;
  for (int i = 0; i < 10; ++i) {
    auto a = failover::lookup("ORDERS", responders, 1000);
    if (!a) continue;
    ++answered;
    slowest_ms = std::max(slowest_ms, a->elapsed_ms);
  }
  stop = true;
  flood.join();
  std::printf("empty datagrams sent: %llu; lookups answered: %d of 10, slowest in %.1f ms\n",
              static_cast<unsigned long long>(sent.load()), answered, slowest_ms);
  EXPECT_EQ(answered, 10);
  EXPECT_LT(slowest_ms, 200.0) << "a lookup waited behind the flood";
}

// Finding 2: one round drained the socket without bound, so a flood held the serving thread (the
// one that also serves requests) for as long as it lasted.
TEST(LookupHostile, Flood_OneRoundHandlesAtMostTheBound_RestOnTheNext) {
  TunableOverride bound("lookup_max_datagrams_per_round", 64);
  auto responder = bound_responder();
  ASSERT_TRUE(responder);
  UdpSocket s = client_socket();
  // Requests for an unknown name: each is read and handled in full, and none is answered.
  auto request = ssrp::encode_request({ssrp::MessageType::kClientUnicastInst, "NOBODY"});
  constexpr std::size_t kSent = 150;
  for (std::size_t i = 0; i < kSent; ++i) ASSERT_TRUE(s.send_to(request, responder->address()));
  std::size_t first = responder->handle_pending();
  EXPECT_EQ(first, 64u) << "one round must stop at the bound";
  std::size_t total = first;
  for (int round = 0; round < 10 && total < kSent; ++round) {
    std::size_t n = responder->handle_pending();
    EXPECT_LE(n, 64u);
    total += n;
  }
  EXPECT_EQ(total, kSent) << "what a round leaves is read on the next ones";
  EXPECT_EQ(responder->handle_pending(), 0u);
}

}  // namespace
}  // namespace viaduct::cluster
