// The command line as scripts and operators see it (issue 10): what each subcommand prints, where,
// and with which exit status.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>
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

struct ToolRun {
  int exit_code = -1;  // -1: did not exit in time (or killed)
  std::string out, err;
};

ToolRun run_tool(std::vector<std::string> args) {
  std::string err_path = "/tmp/viaduct-cli-test-" + std::to_string(getpid()) + ".err";
  std::remove(err_path.c_str());
  args.insert(args.begin(), VIADUCT_TOOL);
  ToolRun r;
  {
    Proc tool(args, err_path);
    auto status = tool.wait_exit(20000);
    if (status && WIFEXITED(*status)) r.exit_code = WEXITSTATUS(*status);
    r.out = tool.output();
  }
  std::ifstream err_file(err_path);
  r.err.assign(std::istreambuf_iterator<char>(err_file), std::istreambuf_iterator<char>());
  std::remove(err_path.c_str());
  return r;
}

// Bad usage exits 2 with the reason on stderr and nothing on stdout, whatever the subcommand
// (it exited 104-109, and bad values of some options were taken or ignored).
TEST(Cli, BadUsage_Exits2_ReasonOnStderr_NothingOnStdout) {
  struct Row {
    std::vector<std::string> args;
    const char* reason;  // in stderr
  };
  const Row rows[] = {
      {{}, "a subcommand is required"},
      {{"nonsense"}, "not expected: nonsense"},
      {{"info", "--bogus"}, "--bogus"},
      {{"--log-level", "verbose", "info"}, "--log-level"},
      {{"--set", "no_such_tunable=1", "info"}, "no_such_tunable"},
      {{"--set", "channel_keepalive_missed_limit=abc", "info"}, "channel_keepalive_missed_limit"},
      {{"perf", "client", "--iterations", "-10"}, "--iterations"},
      {{"perf", "client", "--iterations", "0"}, "--iterations"},
      {{"perf", "client", "--depth", "0"}, "--depth"},
      {{"perf", "client", "--seconds", "-1"}, "--seconds"},
      {{"perf", "client", "--tests", "foo"}, "unknown test 'foo'"},
      {{"perf", "client", "--tests", ""}, "--tests"},
      {{"perf"}, "A subcommand is required"},
      {{"lookup"}, "name is required"},
      {{"lookup", "X", "--timeout-ms", "0"}, "--timeout-ms"},
      {{"load"}, "name is required"},
      {{"serve", "--listen", "ofi+tcp://127.0.0.1:1"}, "--name is required"},
      {{"serve", "--name", "X", "--listen", "x", "--role", "boss"}, "--role"},
      {{"serve", "--name", "X", "--listen", "x", "--epoch", "0"}, "--epoch"},
      {{"keygen"}, "file is required"},
      {{"key-public", "--name", "X"}, "--cluster-key is required"},
      {{"bench"}, "A subcommand is required"},
      {{"bench", "failover", "--trials", "-3"}, "--trials"},
      {{"bench", "failover", "--mode", "explode"}, "--mode"},
      {{"bench", "faults", "--restart-percent", "101"}, "--restart-percent"},
      {{"bench", "faults", "--kinds", "meteor"}, "--kinds"},
  };
  for (const Row& row : rows) {
    std::string cmd = "viaduct";
    for (const auto& a : row.args) cmd += " " + a;
    ToolRun r = run_tool(row.args);
    EXPECT_EQ(r.exit_code, 2) << cmd << "\nstderr: " << r.err << "\nstdout: " << r.out;
    EXPECT_NE(r.err.find(row.reason), std::string::npos)
        << cmd << ": stderr does not say '" << row.reason << "':\n"
        << r.err;
    EXPECT_EQ(r.out, "") << cmd;
  }
}

// A failure at run time exits 1 with the reason on stderr; stdout stays for results.
TEST(Cli, RuntimeFailure_Exits1_ReasonOnStderr_NothingOnStdout) {
  ToolRun r = run_tool({"keygen", "/nonexistent-dir-of-viaduct-tests/key"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("/nonexistent-dir-of-viaduct-tests/key"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  // Nobody answers on the discard port: a clear timeout.
  r = run_tool({"lookup", "NOBODY", "--cluster", "127.0.0.1:9", "--timeout-ms", "200"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("NOBODY"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Cli, Help_Exits0_OnStdout) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--help"}, {"serve", "--help"}, {"bench", "failover", "--help"}}) {
    ToolRun r = run_tool(args);
    EXPECT_EQ(r.exit_code, 0) << args.front();
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace viaduct
