// The session's helper-thread connector over the in-process fake back end: a connect comes back as
// a channel with the Domain it lives in, a failed one as its error, and a connect that start()
// or cancel() abandoned never comes back.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <thread>

#include "failover/background_connector.hpp"
#include "tests/transport/test_support.hpp"

namespace viaduct::failover {
namespace {

using Clock = std::chrono::steady_clock;

// Polls take() as the session does, for up to 5 s.
std::optional<ConnectOutcome> take_within_5s(BackgroundConnector& connector) {
  auto until = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < until) {
    if (auto outcome = connector.take()) return outcome;
    connector.wait(1'000'000);
  }
  return std::nullopt;
}

TEST(BackgroundConnector, Connects_HandsOverAWorkingChannelWithItsDomain) {
  viaduct::testing::ReverseHandler handler;
  viaduct::testing::ServerThread server("fake://bgc-ok:0", &handler);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  BackgroundConnector connector;
  connector.start(server.address(), {}, 2000);
  auto outcome = take_within_5s(connector);
  ASSERT_TRUE(outcome.has_value());
  ASSERT_TRUE(outcome->channel != nullptr) << outcome->status.to_string();
  ASSERT_TRUE(outcome->domain != nullptr);
  std::array<std::byte, 3> request{std::byte{1}, std::byte{2}, std::byte{3}};
  std::array<std::byte, 3> response{};
  auto n = outcome->channel->call(request, response, 2000);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_EQ(response[0], std::byte{3});
  EXPECT_FALSE(connector.take().has_value());  // once
}

TEST(BackgroundConnector, NobodyListens_TheErrorComesBack) {
  BackgroundConnector connector;
  connector.start(transport::Address::parse("fake://bgc-nobody:1").value(), {}, 200);
  auto outcome = take_within_5s(connector);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_FALSE(outcome->status.is_ok());
  EXPECT_EQ(outcome->channel, nullptr);
}

TEST(BackgroundConnector, SecondStart_OnlyItsResultComesBack) {
  viaduct::testing::ReverseHandler handler;
  viaduct::testing::ServerThread server("fake://bgc-second:0", &handler);
  ASSERT_TRUE(server.ok());
  BackgroundConnector connector;
  connector.start(transport::Address::parse("fake://bgc-nobody:1").value(), {}, 200);
  connector.start(server.address(), {}, 2000);
  auto outcome = take_within_5s(connector);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_NE(outcome->channel, nullptr) << outcome->status.to_string();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(connector.take().has_value());  // the first one's outcome was dropped
}

TEST(BackgroundConnector, Cancelled_NothingComesBack) {
  viaduct::testing::ReverseHandler handler;
  viaduct::testing::ServerThread server("fake://bgc-cancel:0", &handler);
  ASSERT_TRUE(server.ok());
  BackgroundConnector connector;
  connector.start(server.address(), {}, 2000);
  connector.cancel();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(connector.take().has_value());
}

}  // namespace
}  // namespace viaduct::failover
