// The command line as scripts and operators see it (issue 10): what each subcommand prints, where,
// and with which exit status.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <viaduct/version.hpp>

#include "tests/test_ports.hpp"
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

// A bad value in a VIADUCT_* variable is bad usage (exit 2, named); a misspelt name is warned
// about on stderr and the command goes on. Both were silently ignored.
TEST(Cli, BadEnvironment_ValueExits2_MisspeltNameWarned) {
  setenv("VIADUCT_CHANNEL_KEEPALIVE_MISSED_LIMIT", "lots", 1);
  ToolRun r = run_tool({"info"});
  unsetenv("VIADUCT_CHANNEL_KEEPALIVE_MISSED_LIMIT");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("VIADUCT_CHANNEL_KEEPALIVE_MISSED_LIMIT=lots"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  setenv("VIADUCT_PARTNER_TAKEOVER_AFTER", "50", 1);  // the _MS is missing
  r = run_tool({"info"});
  unsetenv("VIADUCT_PARTNER_TAKEOVER_AFTER");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("VIADUCT_PARTNER_TAKEOVER_AFTER names no viaduct setting"),
            std::string::npos)
      << r.err;
}

// A TCP listener on 127.0.0.1:port, so that a server the tool starts there cannot bind.
class PortTaken {
 public:
  explicit PortTaken(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ =
        ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(fd_, 1) == 0;
  }
  ~PortTaken() { ::close(fd_); }
  PortTaken(const PortTaken&) = delete;
  PortTaken& operator=(const PortTaken&) = delete;
  [[nodiscard]] bool ok() const { return ok_; }

 private:
  int fd_;
  bool ok_ = false;
};

// Under --json a failure still produces one valid JSON document, with an "error" object (and
// the results measured before it): on stdout for the commands that print, in the --json file for
// the bench commands. Before, a failure printed no JSON at all.
TEST(Cli, JsonFailure_ValidJsonWithError_OnStdoutOrInTheFile) {
  std::uint16_t base = testing::test_port_block();
  std::string port = std::to_string(base);
  PortTaken taken(base);
  ASSERT_TRUE(taken.ok());
  struct StdoutRow {
    std::vector<std::string> args;
  };
  const StdoutRow stdout_rows[] = {
      // Refused: the port is bound but nobody accepts fabric connections on the discard port.
      {{"perf", "client", "--connect", "ofi+tcp://127.0.0.1:9", "--tests", "lat", "--json"}},
      {{"lookup", "NOBODY", "--cluster", "127.0.0.1:9", "--timeout-ms", "200", "--json"}},
      {{"--set", "failover_call_deadline_ms=300", "load", "NOBODY", "--cluster", "127.0.0.1:9",
        "--seconds", "1", "--json"}},
  };
  for (const auto& row : stdout_rows) {
    std::string cmd = "viaduct";
    for (const auto& a : row.args) cmd += " " + a;
    ToolRun r = run_tool(row.args);
    EXPECT_EQ(r.exit_code, 1) << cmd << "\nstderr: " << r.err;
    auto doc = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << cmd << ": stdout is not JSON:\n" << r.out;
    ASSERT_TRUE(doc.contains("error")) << cmd << ": " << r.out;
    EXPECT_FALSE(doc["error"]["message"].get<std::string>().empty()) << cmd;
    EXPECT_FALSE(r.err.empty()) << cmd << ": the reason belongs on stderr too";
  }
  std::string json_path = ::testing::TempDir() + "viaduct-cli-json-" + std::to_string(getpid());
  const std::vector<std::string> file_rows[] = {
      {"bench", "failover", "--trials", "1", "--base-port", port},
      {"bench", "faults", "--faults", "1", "--base-port", port, "--max-seconds", "20"},
      {"bench", "crowd", "--port", port, "--rounds", "1"},
  };
  for (auto args : file_rows) {
    std::string cmd = "viaduct";
    for (const auto& a : args) cmd += " " + a;
    args.push_back("--json");
    args.push_back(json_path);
    std::remove(json_path.c_str());
    ToolRun r = run_tool(args);
    EXPECT_EQ(r.exit_code, 1) << cmd << "\nstderr: " << r.err << "\nstdout: " << r.out;
    std::ifstream in(json_path);
    ASSERT_TRUE(in.good()) << cmd << ": no --json file";
    auto doc = nlohmann::json::parse(in, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << cmd << ": the --json file is not JSON";
    EXPECT_TRUE(doc.contains("error")) << cmd << ": " << doc.dump();
  }
  std::remove(json_path.c_str());
}

// `viaduct bench cache` runs every system briefly and its --json file has an entry for each
// (system, workload, depth), the ratios to Redis and no error.
TEST(Cli, BenchCache_Smoke_JsonHasEveryEntry) {
  std::uint16_t base = testing::test_port_block();
  std::string json_path = ::testing::TempDir() + "viaduct-bench-cache-" + std::to_string(getpid());
  std::remove(json_path.c_str());
  ToolRun r = run_tool({"bench", "cache", "--seconds", "0.3", "--records", "200", "--base-port",
                        std::to_string(base), "--redis-port", std::to_string(base + 10), "--json",
                        json_path});
  EXPECT_EQ(r.exit_code, 0) << "stderr: " << r.err << "\nstdout: " << r.out;
  std::ifstream in(json_path);
  ASSERT_TRUE(in.good()) << "no --json file; stdout: " << r.out;
  auto doc = nlohmann::json::parse(in, nullptr, false);
  std::remove(json_path.c_str());
  ASSERT_FALSE(doc.is_discarded()) << "the --json file is not JSON";
  EXPECT_FALSE(doc.contains("error")) << doc.dump(2);
  auto has = [&](const std::string& system, const std::string& workload, int depth) {
    for (const auto& e : doc["results"]) {
      if (e.value("system", "") == system && e.value("workload", "") == workload &&
          e.value("depth", 0) == depth) {
        return e.value("ops", 0) > 0 && e.value("errors", 1) == 0 && e.value("p50_us", 0.0) > 0;
      }
    }
    return false;
  };
  bool redis_skipped = false;
  for (const auto& e : doc["results"]) {
    if (e.value("system", "") == "redis" && e.contains("skipped")) redis_skipped = true;
  }
  std::vector<std::string> systems = {"viaduct", "sqlite"};
  if (!redis_skipped) systems.push_back("redis");
  for (const auto& system : systems) {
    for (const char* workload : {"A", "B", "C"}) {
      EXPECT_TRUE(has(system, workload, 1)) << system << " " << workload << " depth 1";
    }
    for (const char* workload : {"A", "B"}) {
      EXPECT_TRUE(has(system, workload, 32)) << system << " " << workload << " depth 32";
    }
  }
  if (redis_skipped) GTEST_SKIP() << "skipped: no redis-server for the baseline";
  EXPECT_TRUE(doc["viaduct_over_redis_get_p50_depth1"].contains("C")) << doc.dump(2);
  EXPECT_GT(doc["read_only_get_p50_depth1"].value("redis_get_p50_us", 0.0), 0) << doc.dump(2);
}

// The children of `pid` and theirs, from /proc.
std::set<pid_t> descendants_of(pid_t pid) {
  std::set<pid_t> found{pid};
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(entry.path() / "stat");
      std::string line;
      if (!std::getline(stat, line)) continue;
      // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
      auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      char state = 0;
      int ppid = 0;
      if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) continue;
      pid_t child = std::stoi(name);
      if (found.count(ppid) != 0 && found.count(child) == 0) {
        found.insert(child);
        grew = true;
      }
    }
  }
  found.erase(pid);
  return found;
}

// Alive and not a zombie (an orphan's zombie waits for whoever reaps it: that is not running).
bool running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// Ctrl-C (SIGINT to the bench alone, as a supervisor would send it) during `viaduct bench
// failover`: the bench ends within seconds and none of the servers it started keeps running.
// Before, libinfinipath's SIGINT handler could deadlock the bench inside libfabric, and the
// servers outlived it.
TEST(Cli, CtrlCDuringBenchFailover_BenchEnds_NoServerLeft) {
  std::uint16_t base = testing::test_port_block();
  Proc bench(
      {VIADUCT_TOOL, "bench", "failover", "--trials", "50", "--base-port", std::to_string(base)});
  // Interrupted once the first trial's pair runs (both servers started, the load under way).
  std::set<pid_t> servers;
  for (int i = 0; i < 1500 && servers.size() < 2; ++i) {
    servers = descendants_of(bench.pid());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  servers = descendants_of(bench.pid());
  ASSERT_GE(servers.size(), 2u) << "no servers seen under the bench";
  bench.signal(SIGINT);
  auto status = bench.wait_exit(10000);
  ASSERT_TRUE(status.has_value()) << "the bench did not end within 10 s of SIGINT";
  EXPECT_TRUE(WIFSIGNALED(*status) || WIFEXITED(*status));
  std::set<pid_t> left = servers;
  for (int i = 0; i < 250 && !left.empty(); ++i) {
    std::erase_if(left, [](pid_t pid) { return !running(pid); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(left.empty()) << left.size() << " server(s) still running after the bench ended";
  for (pid_t pid : left) ::kill(pid, SIGKILL);
}

// A crash is a crash: a server killed by SIGSEGV dies of SIGSEGV (core dump, the signal in its
// wait status). libinfinipath's handler, loaded with libfabric, made it exit with status 1.
TEST(Cli, ServerCrash_DiesOfTheSignal_NotExit1) {
  // No core file from the crash below (the limit is inherited by the child).
  rlimit no_core{0, 0};
  ASSERT_EQ(setrlimit(RLIMIT_CORE, &no_core), 0);
  std::uint16_t base = testing::test_port_block();
  Proc server({VIADUCT_TOOL, "serve", "--name", "CRASH", "--listen",
               "ofi+tcp://127.0.0.1:" + std::to_string(base), "--lookup", "off"});
  ASSERT_TRUE(server.wait_for("serving CRASH", 10000)) << server.output();
  server.signal(SIGSEGV);
  auto status = server.wait_exit(10000);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFSIGNALED(*status)) << "exited with status " << WEXITSTATUS(*status);
  EXPECT_EQ(WTERMSIG(*status), SIGSEGV);
}

// A pair started from one configuration file (`serve --config F --id ID`), found and loaded by
// clients that name only the service and the file; a bad file is bad usage naming key and line.
TEST(Cli, ConfigFile_PairServesFromIt_ClientsFindItByName_BadFileExits2) {
  std::uint16_t base = testing::test_port_block();
  std::string dir = ::testing::TempDir() + "viaduct-config-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::string key = dir + "/cluster.key";
  std::remove(key.c_str());
  ASSERT_EQ(run_tool({"keygen", key}).exit_code, 0);
  auto port = [&](int offset) { return std::to_string(base + offset); };
  std::string config = dir + "/cluster.toml";
  std::ofstream(config) << "[cluster]\nkey_file = \"cluster.key\"\n"
                        << "[[service]]\nname = \"ORDERS\"\n"
                        << "[[service.server]]\nid = \"a\"\nrole = \"active\"\n"
                        << "listen = \"ofi+tcp://127.0.0.1:" << port(0) << "\"\n"
                        << "lookup = \"127.0.0.1:" << port(2) << "\"\n"
                        << "[[service.server]]\nid = \"b\"\nrole = \"passive\"\n"
                        << "listen = \"ofi+tcp://127.0.0.1:" << port(1) << "\"\n"
                        << "lookup = \"127.0.0.1:" << port(3) << "\"\n";
  ToolRun check = run_tool({"config", "check", config});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.out.find("a: active at ofi+tcp://127.0.0.1:" + port(0)), std::string::npos)
      << check.out;
  Proc a({VIADUCT_TOOL, "serve", "--config", config, "--id", "a"});
  Proc b({VIADUCT_TOOL, "serve", "--config", config, "--id", "b"});
  ASSERT_TRUE(a.wait_for("serving ORDERS", 10000)) << a.output();
  ASSERT_TRUE(b.wait_for("in-sync ORDERS", 20000)) << b.output();
  ToolRun found = run_tool({"lookup", "ORDERS", "--config", config, "--json"});
  ASSERT_EQ(found.exit_code, 0) << found.err;
  auto doc = nlohmann::json::parse(found.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << found.out;
  EXPECT_EQ(doc["tcp_port"], base);
  // The load pins the service key derived from the file's cluster key.
  ToolRun load = run_tool({"load", "ORDERS", "--config", config, "--seconds", "1", "--json"});
  EXPECT_EQ(load.exit_code, 0) << load.err;
  auto summary = nlohmann::json::parse(load.out, nullptr, false);
  ASSERT_FALSE(summary.is_discarded()) << load.out << load.err;
  EXPECT_GT(summary["answered"].get<std::uint64_t>(), 0u) << load.out;
  EXPECT_EQ(summary["errors"].get<std::uint64_t>(), 0u) << load.out;
  EXPECT_TRUE(a.wait_exit(0) == std::nullopt) << "the active died: " << a.output();
  // Mistakes: the key and line named, exit 2, nothing started.
  std::ofstream(config, std::ios::app) << "lisen = \"x\"\n";
  ToolRun bad = run_tool({"serve", "--config", config, "--id", "b"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("cluster.toml:15:9: unknown key 'lisen'"), std::string::npos) << bad.err;
  ToolRun no_id = run_tool({"serve", "--config", config});
  EXPECT_EQ(no_id.exit_code, 2);
  ToolRun mixed = run_tool({"serve", "--config", config, "--id", "a", "--name", "X"});
  EXPECT_EQ(mixed.exit_code, 2);
  EXPECT_NE(mixed.err.find("excludes"), std::string::npos) << mixed.err;
  std::filesystem::remove_all(dir);
}

// Under systemd (Type=notify): READY=1 with the role once serving, STOPPING=1 on SIGTERM, on the
// socket NOTIFY_SOCKET names.
TEST(Cli, Serve_UnderSystemd_NotifiesReadyThenStopping) {
  std::string path = ::testing::TempDir() + "viaduct-notify-" + std::to_string(getpid());
  std::remove(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  auto receive = [fd](int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return std::string();
    char buf[512];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  };
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  std::uint16_t base = testing::test_port_block();
  Proc server({VIADUCT_TOOL, "serve", "--name", "UNIT", "--listen",
               "ofi+tcp://127.0.0.1:" + std::to_string(base), "--lookup", "off"});
  unsetenv("NOTIFY_SOCKET");
  std::string ready = receive(10000);
  EXPECT_NE(ready.find("READY=1"), std::string::npos) << ready;
  EXPECT_NE(ready.find("STATUS=active epoch 1"), std::string::npos) << ready;
  EXPECT_TRUE(server.wait_for("serving UNIT", 1000)) << "notified before serving";
  server.signal(SIGTERM);
  EXPECT_EQ(receive(10000), "STOPPING=1");
  auto status = server.wait_exit(10000);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  ::close(fd);
  std::remove(path.c_str());
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
