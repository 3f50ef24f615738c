// The command line as scripts and operators see it (issue 10): what each subcommand prints, where,
// and with which exit status.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <viaduct/version.hpp>

#include "tools/bench/child_process.hpp"

namespace viaduct {
namespace {

using Proc = bench::ChildProcess;

// `viaduct --version` names the version of the library it was linked with, which is the one the
// headers were generated for.
TEST(Cli, Version_MatchesTheLibraryAndTheHeaders) {
  EXPECT_STREQ(version(), VIADUCT_VERSION_STRING);
  EXPECT_EQ(std::to_string(VIADUCT_VERSION_MAJOR) + "." + std::to_string(VIADUCT_VERSION_MINOR) +
                "." + std::to_string(VIADUCT_VERSION_PATCH),
            VIADUCT_VERSION_STRING);
  Proc tool({VIADUCT_TOOL, "--version"});
  auto status = tool.wait_exit(10000);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0);
  EXPECT_EQ(tool.output(), std::string("viaduct ") + VIADUCT_VERSION_STRING + "\n");
}

}  // namespace
}  // namespace viaduct
