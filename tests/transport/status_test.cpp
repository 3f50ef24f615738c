#include "transport/status.hpp"

#include <gtest/gtest.h>

#include <string>

namespace viaduct {
namespace {

TEST(Result, ValueOrStatus) {
  Result<int> ok = 7;
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok.value(), 7);
  EXPECT_EQ(*ok, 7);
  const Result<std::string> text = std::string("abc");
  EXPECT_EQ(text.value().size(), 3u);
  Result<int> failed = Status(Code::kTimeout, "no answer");
  EXPECT_FALSE(failed.is_ok());
  EXPECT_EQ(failed.status().code(), Code::kTimeout);
}

// Reading the value of an error was undefined behaviour (issue 10): it now stops the process
// with the error named, so the missing check is found at once.
TEST(ResultDeathTest, ValueOfAnError_AbortsNamingTheError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Result<int> failed = Status(Code::kTimeout, "no server answers");
  EXPECT_DEATH((void)failed.value(),
               "Result::value\\(\\) called on an error: timeout.*no server answers");
  Result<std::string> moved = Status(Code::kRejected, "wrong-name");
  EXPECT_DEATH((void)std::move(moved).value(), "called on an error: rejected");
  Result<int> empty = Status::ok();
  EXPECT_DEATH((void)*empty, "no value");
}

}  // namespace
}  // namespace viaduct
