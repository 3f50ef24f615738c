#include "transport/tunable.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace viaduct {
namespace {

Tunable test_knob_ms("test", "test_knob_ms", 5, 1, 100, "a knob for this test");
Tunable test_env_knob_ms("test", "test_env_knob_ms", 5, 1, 100, "a knob set from the environment");

TEST(Tunable, DefaultThenSetAndRangeChecked) {
  EXPECT_EQ(test_knob_ms.get(), 5);
  EXPECT_TRUE(Tunable::set_from_string("test_knob_ms=42").is_ok());
  EXPECT_EQ(test_knob_ms.get(), 42);
  EXPECT_EQ(test_knob_ms.source(), "set");
  EXPECT_EQ(Tunable::set_from_string("test_knob_ms=1000").code(), Code::kInvalidArgument);
  EXPECT_EQ(Tunable::set_from_string("test_knob_ms=abc").code(), Code::kInvalidArgument);
  EXPECT_EQ(Tunable::set_from_string("no_such_knob=1").code(), Code::kInvalidArgument);
  EXPECT_EQ(Tunable::set_from_string("test_knob_ms").code(), Code::kInvalidArgument);
  EXPECT_EQ(test_knob_ms.get(), 42);
}

TEST(Tunable, EnvironmentOverridesDefault) {
  setenv("VIADUCT_TEST_ENV_KNOB_MS", "17", 1);
  EXPECT_EQ(test_env_knob_ms.get(), 17);
  EXPECT_EQ(test_env_knob_ms.source(), "env");
}

TEST(Tunable, EveryTunableHasUnitHelpAndSaneDefault) {
  for (const Tunable* t : Tunable::all()) {
    EXPECT_FALSE(t->help().empty()) << t->name();
    EXPECT_GE(t->default_value(), t->min_value()) << t->name();
    EXPECT_LE(t->default_value(), t->max_value()) << t->name();
  }
}

// A tunable's variable with a bad value is an error naming it (it was ignored silently); a
// misspelt name is a warning; the scripts' own variables are neither.
TEST(Tunable, Environment_BadValueRefused_MisspeltNameWarned_ScriptVariablesKnown) {
  std::vector<std::string> warnings;
  setenv("VIADUCT_CHANNEL_KEEPALIVE_MISSED_LIMIT", "abc", 1);
  Status st = Tunable::check_environment(&warnings);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("VIADUCT_CHANNEL_KEEPALIVE_MISSED_LIMIT=abc"), std::string::npos)
      << st.message();
  setenv("VIADUCT_CHANNEL_KEEPALIVE_MISSED_LIMIT", "-5", 1);
  st = Tunable::check_environment(&warnings);
  EXPECT_NE(st.message().find("must be in"), std::string::npos) << st.message();
  unsetenv("VIADUCT_CHANNEL_KEEPALIVE_MISSED_LIMIT");
  setenv("VIADUCT_LOG_LEVEL", "verbose", 1);
  EXPECT_FALSE(Tunable::check_environment(&warnings).is_ok());
  unsetenv("VIADUCT_LOG_LEVEL");

  warnings.clear();
  setenv("VIADUCT_CHANEL_KEEPALIVE_MISSED_LIMIT", "3", 1);  // misspelt
  setenv("VIADUCT_TEST_QUICK", "1", 1);                     // a script's
  EXPECT_TRUE(Tunable::check_environment(&warnings).is_ok());
  // Only the names here are checked: the environment may hold tunables of modules this test
  // does not link (the TSan stage sets VIADUCT_PARTNER_TAKEOVER_AFTER_MS), which it cannot know.
  auto warned = [&](const std::string& name) {
    return std::count_if(warnings.begin(), warnings.end(), [&](const std::string& w) {
      return w.find(name + " ") != std::string::npos;
    });
  };
  EXPECT_EQ(warned("VIADUCT_CHANEL_KEEPALIVE_MISSED_LIMIT"), 1);
  EXPECT_EQ(warned("VIADUCT_TEST_QUICK"), 0);
  unsetenv("VIADUCT_CHANEL_KEEPALIVE_MISSED_LIMIT");
  unsetenv("VIADUCT_TEST_QUICK");
}

}  // namespace
}  // namespace viaduct
