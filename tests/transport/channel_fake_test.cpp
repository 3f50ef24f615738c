// Channel protocol over the strict in-process fake back end: a send that finds no posted receive
// breaks the connection there, so these tests catch any flow-control slip.
#include <gtest/gtest.h>

#include <numeric>

#include "tests/transport/test_support.hpp"

namespace viaduct::transport {
namespace {

using viaduct::testing::ReverseHandler;
using viaduct::testing::ServerThread;

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
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
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

}  // namespace
}  // namespace viaduct::transport
