#include "transport/address.hpp"

#include <gtest/gtest.h>

namespace viaduct::transport {
namespace {

TEST(Address, ParsesEveryScheme) {
  auto a = Address::parse("ofi+tcp://127.0.0.1:7400");
  ASSERT_TRUE(a.is_ok());
  EXPECT_EQ(a->backend, BackendKind::kOfiTcp);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7400);
  EXPECT_EQ(Address::parse("ofi+verbs://h:1")->backend, BackendKind::kOfiVerbs);
  EXPECT_EQ(Address::parse("verbs://10.0.0.1:0")->backend, BackendKind::kVerbs);
  auto v6 = Address::parse("ofi+tcp://[::1]:9");
  ASSERT_TRUE(v6.is_ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->to_string(), "ofi+tcp://[::1]:9");
}

TEST(Address, BadInputGivesClearError) {
  for (const char* bad : {"", "tcp://h:1", "ofi+tcp://h", "ofi+tcp://:1", "ofi+tcp://h:70000",
                          "ofi+tcp://h:x", "ofi+tcp://::1:5", "ofi+tcp://[::1"}) {
    auto a = Address::parse(bad);
    EXPECT_FALSE(a.is_ok()) << bad;
    EXPECT_EQ(a.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(a.status().message().find("expected"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace viaduct::transport
