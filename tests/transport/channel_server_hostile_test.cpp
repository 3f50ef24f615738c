// Hostile peers against a ChannelServer over real libfabric tcp endpoints on 127.0.0.1 (issue 9,
// finding 10): connection requests beyond the server's bounds are refused with a reason, raw TCP
// connects that never speak libfabric's handshake do not stall the loop, and a crowd of idle
// clients neither starves a working one nor is dropped while it heartbeats. Outcomes are
// asserted (answers, counts, states), never durations.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "tests/scoped_tunable.hpp"
#include "tests/transport/test_support.hpp"
#include "transport/channel_server.hpp"

namespace viaduct::transport {
namespace {

using viaduct::testing::ReverseHandler;
using namespace std::chrono_literals;

// A ChannelServer on its own thread; its counters are read after stop() (the serving thread
// owns them).
class ServingThread {
 public:
  explicit ServingThread(ChannelServerOptions options) {
    auto address = Address::parse("ofi+tcp://127.0.0.1:0");
    domain_ = std::move(Domain::open(address.value()).value());
    options.on_channel_closed = [this](const Status& why) {
      if (why.code() == Code::kTimeout) ++timed_out;
      std::lock_guard lock(mutex_);
      last_close = why.to_string();
    };
    auto server = ChannelServer::listen(*domain_, address.value(), &handler, std::move(options));
    EXPECT_TRUE(server.is_ok()) << server.status().to_string();
    server_ = std::move(server.value());
    address_ = server_->address();
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        (void)server_->run_once(0);
        connections.store(server_->connections());
        pending.store(server_->pending_accepts());
      }
    });
  }
  ~ServingThread() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] const Address& address() const { return address_; }
  // Only after stop().
  [[nodiscard]] const ChannelServerStats& stats() const { return server_->stats(); }

  ReverseHandler handler;
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> pending{0};
  std::atomic<std::uint64_t> timed_out{0};
  std::string last_close_reason() {
    std::lock_guard lock(mutex_);
    return last_close;
  }

 private:
  std::mutex mutex_;
  std::string last_close;
  std::unique_ptr<Domain> domain_;
  std::unique_ptr<ChannelServer> server_;
  Address address_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Sends one request and checks the reversed answer.
::testing::AssertionResult answered(Channel& ch, std::uint32_t n) {
  std::byte req[8];
  std::memcpy(req, &n, 4);
  std::memset(req + 4, 0x5a, 4);
  std::byte resp[8] = {};
  auto r = ch.call(std::span(req, 8), std::span(resp, 8), 10000);
  if (!r) return ::testing::AssertionFailure() << r.status().to_string();
  if (r.value() != 8) return ::testing::AssertionFailure() << "answer of " << r.value() << " bytes";
  for (int i = 0; i < 8; ++i) {
    if (resp[i] != req[7 - i]) return ::testing::AssertionFailure() << "wrong answer";
  }
  return ::testing::AssertionSuccess();
}

// A plain TCP connect to the server's port, then either closed at once or held open silent.
int raw_connect(const Address& a) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(a.port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(ChannelServerHostile, ConnectsBeyondMaxConnections_RefusedWithReasonOthersServed) {
  ChannelServerOptions options;
  options.max_connections = 3;
  ServingThread server(options);
  auto domain = Domain::open(server.address()).value();
  std::vector<std::unique_ptr<Channel>> clients;
  for (int i = 0; i < 3; ++i) {
    auto ch = Channel::connect(*domain, server.address(), {}, 10000);
    ASSERT_TRUE(ch.is_ok()) << ch.status().to_string();
    clients.push_back(std::move(ch.value()));
  }
  for (int i = 0; i < 5; ++i) {
    std::vector<std::byte> reason;
    auto extra = Channel::connect(*domain, server.address(), {}, 10000, &reason);
    ASSERT_FALSE(extra.is_ok());
    EXPECT_EQ(extra.status().code(), Code::kRejected) << extra.status().to_string();
    std::string text(reinterpret_cast<const char*>(reason.data()), reason.size());
    EXPECT_EQ(text.rfind(kServerFullReason, 0), 0u) << text;
    EXPECT_NE(text.find("server_max_connections"), std::string::npos) << text;
  }
  for (std::uint32_t n = 0; n < 100; ++n) {
    for (auto& c : clients) ASSERT_TRUE(answered(*c, n));
  }
  // A slot freed is a slot usable again.
  clients.pop_back();
  std::unique_ptr<Channel> again;
  for (int attempt = 0; attempt < 200 && !again; ++attempt) {
    auto ch = Channel::connect(*domain, server.address(), {}, 10000);
    if (ch.is_ok())
      again = std::move(ch.value());
    else
      std::this_thread::sleep_for(50ms);  // the server has not noticed the close yet
  }
  ASSERT_TRUE(again);
  EXPECT_TRUE(answered(*again, 7));
  server.stop();
  EXPECT_GE(server.stats().refused_full, 5u);
  EXPECT_EQ(server.stats().accepted, 4u);
}

TEST(ChannelServerHostile, StreamOfRawTcpConnects_WorkingClientServedNothingHeld) {
  ChannelServerOptions options;
  options.half_open_timeout_ms = 200;
  ServingThread server(options);
  auto domain = Domain::open(server.address()).value();
  auto worker = Channel::connect(*domain, server.address(), {}, 10000);
  ASSERT_TRUE(worker.is_ok()) << worker.status().to_string();
  std::atomic<bool> flood_done{false};
  std::atomic<int> raw_connects{0};
  std::vector<int> held;  // connected and silent: never send libfabric's connection request
  std::thread flood([&] {
    for (int i = 0; i < 500; ++i) {
      int fd = raw_connect(server.address());
      if (fd < 0) continue;
      ++raw_connects;
      if (i % 2 == 0) {
        ::close(fd);  // closed before the handshake
      } else if (held.size() < 100) {
        held.push_back(fd);
      } else {
        ::close(fd);
      }
    }
    flood_done = true;
  });
  std::uint32_t n = 0;
  while (!flood_done.load()) ASSERT_TRUE(answered(*worker.value(), n++));
  flood.join();
  EXPECT_GT(raw_connects.load(), 0);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(answered(*worker.value(), n++));
  // New clients still get in while the silent sockets are held.
  auto late = Channel::connect(*domain, server.address(), {}, 10000);
  ASSERT_TRUE(late.is_ok()) << late.status().to_string();
  EXPECT_TRUE(answered(*late.value(), 1));
  // None of the raw connects became a channel or a pending accept.
  EXPECT_EQ(server.connections.load(), 2u);
  EXPECT_EQ(server.pending.load(), 0u);
  for (int fd : held) ::close(fd);
  server.stop();
  EXPECT_EQ(server.stats().accepted, 2u);
}

TEST(ChannelServerHostile, TwoHundredIdleClients_WorkingClientServedIdleOnesKeptAlive) {
  // An idle budget of 0.5 s (100 ms x 5) instead of 5 s, so that the 2 s below span several.
  viaduct::testing::ScopedTunable scoped_keepalive_idle_interval_ms(
      tunables::channel_keepalive_idle_interval_ms, 100);
  ASSERT_TRUE(scoped_keepalive_idle_interval_ms.ok());
  ChannelServerOptions options;
  ServingThread server(options);
  auto crowd_domain = Domain::open(server.address()).value();
  std::vector<std::unique_ptr<Channel>> crowd;
  const int kIdle = 200;
  auto last_poll = std::chrono::steady_clock::now();
  for (int i = 0; i < kIdle; ++i) {
    auto ch = Channel::connect(*crowd_domain, server.address(), {}, 10000);
    ASSERT_TRUE(ch.is_ok()) << i << ": " << ch.status().to_string();
    crowd.push_back(std::move(ch.value()));
    // Connecting them all takes a while: the ones connected must keep heartbeating meanwhile.
    if (std::chrono::steady_clock::now() - last_poll > 5ms) {
      for (auto& c : crowd) (void)c->poll();
      for (auto& c : crowd) c->check_liveness();
      last_poll = std::chrono::steady_clock::now();
    }
  }
  // The crowd heartbeats from its own thread, as 200 idle clients would.
  std::atomic<bool> stop_crowd{false};
  std::thread crowd_thread([&] {
    while (!stop_crowd.load()) {
      for (auto& c : crowd) (void)c->poll();
      for (auto& c : crowd) c->check_liveness();
      std::this_thread::sleep_for(2ms);
    }
  });
  auto domain = Domain::open(server.address()).value();
  auto worker = Channel::connect(*domain, server.address(), {}, 10000);
  ASSERT_TRUE(worker.is_ok()) << worker.status().to_string();
  // Long enough for several idle keep-alive budgets to pass: the idle ones must have been
  // heard (through the server's readiness set) and answered with heartbeats meanwhile.
  auto until = std::chrono::steady_clock::now() + 2s;
  std::uint32_t n = 0;
  while (std::chrono::steady_clock::now() < until || n < 2000) {
    ASSERT_TRUE(answered(*worker.value(), n++));
  }
  stop_crowd = true;
  crowd_thread.join();
  std::size_t healthy = 0;
  for (auto& c : crowd) healthy += c->healthy() ? 1 : 0;
  EXPECT_EQ(healthy, crowd.size())
      << "an idle client lost its server; the server's last close: " << server.last_close_reason();
  EXPECT_EQ(server.connections.load(), 201u);
  // One of them wakes up and is served.
  EXPECT_TRUE(answered(*crowd[crowd.size() / 2], 99));
  server.stop();
  EXPECT_EQ(server.stats().accepted, 201u);
}

}  // namespace
}  // namespace viaduct::transport
