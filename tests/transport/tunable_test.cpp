#include "transport/tunable.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

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

}  // namespace
}  // namespace viaduct
