// The public API as an application uses it (<viaduct/...> only, apart from the test's scratch key
// and ports): a Server pair and a Client in one process over real libfabric tcp endpoints. The
// active is stopped and destroyed; the passive takes over; the client's next call is served by
// it with no error. The callbacks and the log hook report each step.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <viaduct/client.hpp>
#include <viaduct/log.hpp>
#include <viaduct/server.hpp>

#include "tests/test_ports.hpp"
#include "tools/bench/scratch_key.hpp"

namespace viaduct {
namespace {

class Echo final : public Service {
 public:
  std::uint32_t handle(std::span<const std::byte> request,
                       std::vector<std::byte>& response) override {
    response.assign(request.begin(), request.end());
    return 0;
  }
};

// Lines from callbacks on other threads, waited for by the test.
class Events {
 public:
  void add(std::string line) {
    std::lock_guard lock(mutex_);
    lines_.push_back(std::move(line));
    changed_.notify_all();
  }
  bool wait_for(const std::string& text, int timeout_ms) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
      for (const auto& line : lines_)
        if (line.find(text) != std::string::npos) return true;
      return false;
    });
  }
  std::string all() {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& line : lines_) out += line + "\n";
    return out;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
};

// A server and the thread that runs it.
struct Running {
  std::unique_ptr<Server> server;
  std::atomic<bool> stop{false};
  std::thread thread;
  void start() {
    thread = std::thread([this] { server->run(stop); });
  }
  void halt() {
    stop.store(true);
    if (thread.joinable()) thread.join();
    server.reset();
  }
  ~Running() { halt(); }
};

TEST(PublicApi, ActiveStopped_PassiveTakesOver_ClientFailsOverWithoutError_CallbacksAndLogSayIt) {
  Events events;
  set_log_level(LogLevel::kInfo);
  set_log_handler([&](LogLevel level, std::string_view message) {
    events.add("log " + std::string(log_level_name(level)) + " " + std::string(message));
  });
  std::uint16_t base = testing::test_port_block();
  auto at = [&](int offset) { return std::to_string(base + offset); };
  Echo active_echo, passive_echo;
  Running active, passive;
  ServerOptions a{.name = "API",
                  .role = ServerRole::kActive,
                  .listen = "ofi+tcp://127.0.0.1:" + at(0),
                  .partner = "ofi+tcp://127.0.0.1:" + at(1),
                  .lookup = "127.0.0.1:" + at(2),
                  .cluster_key_file = bench::scratch_key_file()};
  ServerOptions b = a;
  b.role = ServerRole::kPassive;
  std::swap(b.listen, b.partner);
  b.lookup = "127.0.0.1:" + at(3);
  auto started_a = Server::start(a, active_echo);
  ASSERT_TRUE(started_a.is_ok()) << started_a.status().to_string();
  active.server = std::move(started_a.value());
  auto started_b = Server::start(b, passive_echo);
  ASSERT_TRUE(started_b.is_ok()) << started_b.status().to_string();
  passive.server = std::move(started_b.value());
  EXPECT_TRUE(active.server->active());
  EXPECT_FALSE(passive.server->active());
  EXPECT_EQ(active.server->service_key(), passive.server->service_key());
  passive.server->on_notice(
      [&](std::string_view line) { events.add("notice " + std::string(line)); });
  passive.server->on_role_change([&](const RoleChange& change) {
    events.add(std::string(change.active ? "took-over" : "stepped-down") + " epoch " +
               std::to_string(change.epoch) + " reason " + change.reason);
  });
  active.start();
  passive.start();
  ASSERT_TRUE(events.wait_for("notice in-sync API", 20000)) << events.all();

  auto opened = Client::open({.name = "API",
                              .lookup = a.lookup + "," + b.lookup,
                              .service_key = active.server->service_key()});
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  Client& client = *opened.value();
  client.on_failover([&](const FailoverEvent& event) {
    events.add("failover to " + event.server + " epoch " + std::to_string(event.epoch));
  });
  std::string text = "before";
  std::vector<std::byte> answer(64);
  auto n = client.call(std::as_bytes(std::span(text)), answer);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(n.value(), text.size());
  EXPECT_EQ(client.epoch(), 1u);

  active.halt();  // its listener and partner link close: the passive takes over
  ASSERT_TRUE(events.wait_for("took-over epoch 2", 20000)) << events.all();
  text = "after the takeover";
  n = client.call(std::as_bytes(std::span(text)), answer);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string() << "\n" << events.all();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(answer.data()), n.value()), text);
  EXPECT_EQ(client.epoch(), 2u);
  EXPECT_EQ(client.failovers(), 1u);
  EXPECT_TRUE(events.wait_for("failover to ofi+tcp://127.0.0.1:" + at(1) + " epoch 2", 1000))
      << events.all();
  // The library logged the takeover and the failover through the handler.
  EXPECT_TRUE(events.wait_for("log info took-over API epoch 2", 1000)) << events.all();
  EXPECT_TRUE(events.wait_for("log info session API failed over", 1000)) << events.all();
  set_log_handler(nullptr);
  set_log_level(LogLevel::kWarn);
}

TEST(PublicApi, BadOptions_ClearErrorsNamingThem) {
  Echo echo;
  auto server =
      Server::start({.name = "X", .listen = "ofi+tcp://127.0.0.1:1", .lookup = "nope"}, echo);
  ASSERT_FALSE(server.is_ok());
  EXPECT_NE(server.status().message().find("lookup"), std::string::npos)
      << server.status().to_string();
  auto client = Client::open({.name = "X", .lookup = "127.0.0.1:9"});
  ASSERT_FALSE(client.is_ok());
  EXPECT_NE(client.status().message().find("service_key"), std::string::npos)
      << client.status().to_string();
  client = Client::open({.name = "X", .lookup = "127.0.0.1:9", .service_key = "xyz"});
  ASSERT_FALSE(client.is_ok());
  EXPECT_NE(client.status().message().find("service_key"), std::string::npos);
  client = Client::open({.name = "X", .lookup = "", .allow_unverified = true});
  ASSERT_FALSE(client.is_ok());
  EXPECT_NE(client.status().message().find("lookup"), std::string::npos);
}

TEST(PublicApi, LogLevels_ParsedByName) {
  EXPECT_EQ(parse_log_level("WARNING"), LogLevel::kWarn);
  EXPECT_EQ(parse_log_level("off"), LogLevel::kOff);
  EXPECT_FALSE(parse_log_level("verbose").has_value());
  EXPECT_EQ(log_level_name(LogLevel::kDebug), "debug");
}

}  // namespace
}  // namespace viaduct
