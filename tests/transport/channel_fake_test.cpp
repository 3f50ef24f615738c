// Channel protocol over the strict in-process fake back end: a send that finds no posted receive
// breaks the connection there, so these tests catch any flow-control slip.
#include <gtest/gtest.h>

#include <numeric>
#include <thread>

#include "tests/transport/test_support.hpp"
#include "transport/tunables.hpp"

namespace viaduct::transport {
namespace {

using viaduct::testing::RawPeer;
using viaduct::testing::ReverseHandler;
using viaduct::testing::ServerThread;
using Clock = std::chrono::steady_clock;

// Sets a tunable for one test and puts the default back after.
class TunableOverride {
 public:
  TunableOverride(Tunable& t, std::int64_t value) : t_(t) { EXPECT_TRUE(t_.set(value).is_ok()); }
  ~TunableOverride() { (void)t_.set(t_.default_value()); }
  TunableOverride(const TunableOverride&) = delete;
  TunableOverride& operator=(const TunableOverride&) = delete;

 private:
  Tunable& t_;
};

// Waits until the server has dropped `n` channels; returns the last one's reason.
Status wait_closed(ServerThread& server, std::uint64_t n) {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (server.closed_channels.load() < n && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return server.last_close_reason();
}

// The well-behaved client next to an offender is still served, content intact.
void expect_served(Channel& ch, std::size_t size) {
  std::vector<std::byte> req(size);
  for (std::size_t i = 0; i < size; ++i) req[i] = static_cast<std::byte>(i * 7);
  std::vector<std::byte> resp(size);
  auto n = ch.call(req, resp, 5000);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  ASSERT_EQ(n.value(), size);
  EXPECT_TRUE(std::equal(req.rbegin(), req.rend(), resp.begin()));
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
  return v;
}

struct Counter {
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
};
void count(void* user, const Response& r) {
  auto* c = static_cast<Counter*>(user);
  (r.status ? c->ok : c->failed)++;
}

TEST(ChannelFake, ManyOutstandingAgainstSlowReceiver_AllAnsweredNoOverrun) {
  ReverseHandler handler;
  handler.delay_us = 50;
  ServerThread server("fake://flow:0", &handler);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  auto domain = Domain::open(server.address());
  ASSERT_TRUE(domain.is_ok());
  ChannelOptions options;
  options.recv_slots = 8;  // a small window so the backlog is exercised hard
  auto ch = Channel::connect(*domain.value(), server.address(), options, 2000);
  ASSERT_TRUE(ch.is_ok()) << ch.status().to_string();
  Counter c;
  auto req = pattern(100, 1);
  constexpr int kRequests = 3000;
  int issued = 0;
  // A hang guard, not a speed check: 3000 answers take ~0.2 s alone, and 5 s ran out under TSan
  // at load 12 and under a parallel build.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (c.ok + c.failed < kRequests) {
    while (issued < kRequests && ch.value()->call_async(req, count, &c).is_ok()) ++issued;
    ch.value()->poll();
    ASSERT_TRUE(ch.value()->healthy()) << ch.value()->error().to_string();
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << "stuck: issued " << issued << " answered " << c.ok << " client "
        << ch.value()->debug_string();
  }
  EXPECT_EQ(c.ok, static_cast<std::uint64_t>(kRequests));
  EXPECT_EQ(c.failed, 0u);
  EXPECT_GT(ch.value()->stats().backlogged, 0u);
}

TEST(ChannelFake, LargePayloadsByRendezvous_ContentIntact) {
  ReverseHandler handler;
  ServerThread server("fake://big:0", &handler);
  ASSERT_TRUE(server.ok());
  auto domain = Domain::open(server.address());
  auto ch = Channel::connect(*domain.value(), server.address(), {}, 2000);
  ASSERT_TRUE(ch.is_ok());
  for (std::size_t size : {std::size_t{1}, std::size_t{16384}, std::size_t{16385},
                           std::size_t{1} << 20, std::size_t{3'000'001}}) {
    auto req = pattern(size, static_cast<unsigned>(size));
    std::vector<std::byte> resp(size);
    auto n = ch.value()->call(req, resp, 10000);
    ASSERT_TRUE(n.is_ok()) << size << ": " << n.status().to_string();
    ASSERT_EQ(n.value(), size);
    EXPECT_TRUE(std::equal(req.rbegin(), req.rend(), resp.begin())) << size;
  }
  EXPECT_GE(ch.value()->stats().rendezvous_reads, 3u);  // the three large responses
}

TEST(ChannelFake, PeerGone_PendingCallsFailWithConnLost) {
  Counter c;
  std::unique_ptr<Channel> ch;
  std::unique_ptr<Domain> domain;
  {
    ReverseHandler handler;
    handler.delay_us = 20000;
    ServerThread server("fake://gone:0", &handler);
    domain = std::move(Domain::open(server.address()).value());
    auto r = Channel::connect(*domain, server.address(), {}, 2000);
    ASSERT_TRUE(r.is_ok());
    ch = std::move(r.value());
    auto req = pattern(10, 3);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(ch->call_async(req, count, &c).is_ok());
  }  // server destroyed: its channels close
  for (int i = 0; i < 1000 && c.ok + c.failed < 5; ++i) {
    ch->poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(c.ok + c.failed, 5u);
  EXPECT_GT(c.failed, 0u);
  EXPECT_EQ(ch->error().code(), Code::kConnLost);
  std::byte b[4];
  EXPECT_EQ(ch->call(std::span(b, 4), std::span(b, 4), 100).status().code(), Code::kConnLost);
}

// Finding: returned credits were trusted. A frame returning credits the peer never held must cut
// it off (before, the window grew past the peer's receives and could wrap).
TEST(ChannelFake, ForgedCreditFrame_OffenderCutOffOthersServed) {
  ReverseHandler handler;
  ServerThread server("fake://credit:0", &handler);
  ASSERT_TRUE(server.ok());
  auto domain = Domain::open(server.address());
  auto good = Channel::connect(*domain.value(), server.address(), {}, 2000);
  ASSERT_TRUE(good.is_ok());
  auto peer = RawPeer::connect(*domain.value(), server.address());
  ASSERT_TRUE(peer);
  // The server has sent this peer nothing yet, so it holds no credit to return.
  ASSERT_TRUE(peer->send(RawPeer::frame({FrameType::kCredit, 0xffff, 0, 0, 0, 0}, {})).is_ok());
  EXPECT_TRUE(peer->wait_down(5000)) << "a peer returning credits it never held was kept";
  Status why = wait_closed(server, 1);
  EXPECT_EQ(why.cause(), ConnLostCause::kProtocolError) << why.to_string();
  EXPECT_NE(why.message().find("credits"), std::string::npos) << why.to_string();
  expect_served(*good.value(), 100);
}

// Finding: with different eager thresholds, a sender used the lower one and the receiver refused
// any rendezvous at or below its own: payloads between the two values cut the connection. Every
// size class across both thresholds, in both directions, with either side holding the lower one.
TEST(ChannelFake, DifferentEagerThresholds_EverySizeEitherWay) {
  for (auto [client_threshold, server_threshold] :
       {std::pair<std::uint32_t, std::uint32_t>{1024, 16384}, {16384, 1024}, {64, 65536}}) {
    ReverseHandler handler;
    ChannelServerOptions options;
    options.channel.eager_threshold = server_threshold;
    ServerThread server("fake://thresholds:0", &handler, options);
    ASSERT_TRUE(server.ok());
    auto domain = Domain::open(server.address());
    ChannelOptions copts;
    copts.eager_threshold = client_threshold;
    auto ch = Channel::connect(*domain.value(), server.address(), copts, 2000);
    ASSERT_TRUE(ch.is_ok()) << ch.status().to_string();
    std::uint32_t lo = std::min(client_threshold, server_threshold);
    std::uint32_t hi = std::max(client_threshold, server_threshold);
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{lo} - 1, std::size_t{lo},
                             std::size_t{lo} + 1, std::size_t{(lo + hi) / 2}, std::size_t{hi} - 1,
                             std::size_t{hi}, std::size_t{hi} + 1, std::size_t{hi} * 3}) {
      SCOPED_TRACE("client " + std::to_string(client_threshold) + " server " +
                   std::to_string(server_threshold) + " size " + std::to_string(size));
      expect_served(*ch.value(), size);
      ASSERT_TRUE(ch.value()->healthy()) << ch.value()->error().to_string();
    }
    EXPECT_EQ(server.closed_channels.load(), 0u) << server.last_close_reason().to_string();
  }
}

// Finding: a request refused with kWouldBlock had already staged its payload in a registered
// buffer that stayed busy for the channel's life (1000 retries registered 65.5 MB).
TEST(ChannelFake, RequestRefusedWithWouldBlock_StagingNotKept) {
  auto a = Address::parse("fake://stingy:0");
  auto domain = Domain::open(a.value());
  auto listener = domain.value()->listen(a.value());
  ASSERT_TRUE(listener.is_ok());
  // A peer that posts 4 receives and never gives a credit back: the client soon has neither
  // credits nor send slots, and every further request is refused with kWouldBlock.
  std::unique_ptr<RawPeer> peer;
  std::thread acceptor(
      [&] { peer = RawPeer::accept(*domain.value(), *listener.value(), 4, 16384); });
  ChannelOptions options;
  options.recv_slots = 4;
  auto ch = Channel::connect(*domain.value(), listener.value()->address(), options, 2000);
  acceptor.join();
  ASSERT_TRUE(ch.is_ok()) << ch.status().to_string();
  ASSERT_TRUE(peer);
  std::vector<std::byte> req(20000);  // rendezvous: over the 16 KiB threshold
  Counter c;
  int accepted = 0;
  Status refused;
  for (int i = 0; i < 100 && refused.is_ok(); ++i) {
    refused = ch.value()->call_async(req, count, &c);
    if (refused) ++accepted;
  }
  ASSERT_EQ(refused.code(), Code::kWouldBlock) << refused.to_string();
  std::size_t staged = ch.value()->outgoing_staging_bytes();
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(ch.value()->call_async(req, count, &c).code(), Code::kWouldBlock);
  }
  EXPECT_EQ(ch.value()->outgoing_staging_bytes(), staged)
      << "1000 refused requests registered staging (" << accepted << " accepted ones)";
  EXPECT_LE(staged, static_cast<std::size_t>(accepted) * 64 * 1024);
}

// Finding: every rendezvous frame could make us register up to 1 GiB. A peer announcing more than
// channel_max_message_bytes (64 MiB by default) is cut off before anything is registered.
TEST(ChannelFake, HugeRendezvousAnnounced_OffenderCutOffNothingRegistered) {
  ReverseHandler handler;
  ServerThread server("fake://huge:0", &handler);
  ASSERT_TRUE(server.ok());
  auto domain = Domain::open(server.address());
  auto good = Channel::connect(*domain.value(), server.address(), {}, 2000);
  ASSERT_TRUE(good.is_ok());
  constexpr std::uint64_t kAnnounced = 128ULL << 20;  // over 64 MiB, under the old 1 GiB bound
  auto peer = RawPeer::connect(*domain.value(), server.address(), 8, 16384, kAnnounced);
  ASSERT_TRUE(peer);
  ASSERT_TRUE(peer->send(peer->rendezvous_frame(FrameType::kRequest, 1, kAnnounced)).is_ok());
  EXPECT_TRUE(peer->wait_down(5000)) << "a peer announcing 128 MiB was kept";
  Status why = wait_closed(server, 1);
  EXPECT_EQ(why.cause(), ConnLostCause::kProtocolError) << why.to_string();
  EXPECT_NE(why.message().find("channel_max_message_bytes"), std::string::npos) << why.to_string();
  EXPECT_EQ(server.domain().incoming_staging().peak_bytes(), 0u) << "a sink was registered";
  expect_served(*good.value(), 100);
}

// Many rendezvous requests at once: at most channel_max_concurrent_reads (4) are read at a time,
// so at most 4 sinks are registered, and every request is still answered.
TEST(ChannelFake, ManyConcurrentRendezvousRequests_ReadsAndStagingBounded) {
  ReverseHandler handler;
  handler.delay_us = 5000;  // the requests pile up while the server is in its handler
  ServerThread server("fake://many:0", &handler);
  ASSERT_TRUE(server.ok());
  auto domain = Domain::open(server.address());
  constexpr std::uint64_t kSize = 1 << 20;
  constexpr int kRequests = 24;
  auto peer = RawPeer::connect(*domain.value(), server.address(), 64, 16384, kSize);
  ASSERT_TRUE(peer);
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(peer->send(peer->rendezvous_frame(FrameType::kRequest, 100 + i, kSize)).is_ok());
  }
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (handler.served.load() < kRequests && Clock::now() < deadline &&
         server.closed_channels == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(handler.served.load(), static_cast<std::uint64_t>(kRequests))
      << server.last_close_reason().to_string();
  EXPECT_LE(server.domain().incoming_staging().peak_bytes(), 4 * kSize)
      << "more than 4 concurrent reads were given sinks";
  EXPECT_GT(server.domain().incoming_staging().peak_bytes(), 0u);
}

// A peer may have at most channel_max_rendezvous_requests rendezvous requests unanswered (the
// hello tells it); one that sends more is cut off, naming the bound.
TEST(ChannelFake, RendezvousRequestsOverCredit_OffenderCutOff) {
  TunableOverride credit(tunables::channel_max_rendezvous_requests, 2);
  ReverseHandler handler;
  handler.delay_us = 100000;  // the server sits in its first handler while the rest arrive
  ServerThread server("fake://credit2:0", &handler);
  ASSERT_TRUE(server.ok());
  auto domain = Domain::open(server.address());
  constexpr std::uint64_t kSize = 100000;
  auto peer = RawPeer::connect(*domain.value(), server.address(), 8, 16384, kSize);
  ASSERT_TRUE(peer);
  ASSERT_TRUE(peer->send(peer->rendezvous_frame(FrameType::kRequest, 1, kSize)).is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int i = 2; i <= 4; ++i) {
    ASSERT_TRUE(peer->send(peer->rendezvous_frame(FrameType::kRequest, i, kSize)).is_ok());
  }
  EXPECT_TRUE(peer->wait_down(5000)) << "a peer over its rendezvous credit was kept";
  Status why = wait_closed(server, 1);
  EXPECT_EQ(why.cause(), ConnLostCause::kProtocolError) << why.to_string();
  EXPECT_NE(why.message().find("channel_max_rendezvous_requests"), std::string::npos)
      << why.to_string();
}

// An honest client that wants more rendezvous requests in flight than the server's credit is
// held back with kWouldBlock (call() retries), never cut off; and large responses beyond the
// staging budget wait instead of being lost.
TEST(ChannelFake, HonestPeerOverBudgets_ThrottledNeverCutOff) {
  TunableOverride credit(tunables::channel_max_rendezvous_requests, 3);
  TunableOverride staging(tunables::channel_max_staging_bytes, 2 << 20);
  ReverseHandler handler;
  ServerThread server("fake://throttle:0", &handler);
  ASSERT_TRUE(server.ok());
  auto domain = Domain::open(server.address());
  auto ch = Channel::connect(*domain.value(), server.address(), {}, 2000);
  ASSERT_TRUE(ch.is_ok());
  std::vector<std::byte> req(300000);
  Counter c;
  int issued = 0;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (c.ok + c.failed < 40) {
    if (issued < 40) {
      Status s = ch.value()->call_async(req, count, &c);
      if (s) {
        ++issued;
      } else {
        ASSERT_EQ(s.code(), Code::kWouldBlock) << s.to_string();
      }
    }
    ch.value()->poll();
    ASSERT_TRUE(ch.value()->healthy()) << ch.value()->error().to_string();
    ASSERT_LT(Clock::now(), deadline) << ch.value()->debug_string();
  }
  EXPECT_EQ(c.ok, 40u);
  EXPECT_LE(ch.value()->outgoing_staging_bytes(), 2u << 20);
  EXPECT_LE(server.domain().outgoing_staging().peak_bytes(), 2u << 20);
  EXPECT_EQ(server.closed_channels.load(), 0u) << server.last_close_reason().to_string();
}

}  // namespace
}  // namespace viaduct::transport
