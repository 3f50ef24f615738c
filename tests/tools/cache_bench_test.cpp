// The cache cluster's benches as smoke tests of the tools (label cache, about 15-30 s each): a
// short run of each must complete, write its JSON, and find nothing lost, stale or failed.
//   - `viaduct bench cluster-failover`: three data servers killed and restarted in turn;
//   - `viaduct bench cache-faults`: a dozen seeded faults (kills, freezes, double faults).
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/test_ports.hpp"

namespace {

class CacheBench : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(dir_); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // Runs `viaduct bench ARGS --base-port B --json J`; its output, and its exit status in *status.
  std::string bench(const std::string& args, int* status) {
    int base = viaduct::testing::test_port_block();
    std::string command = std::string(VIADUCT_TOOL) + " bench " + args + " --base-port " +
                          std::to_string(base) + " --json " + json_ + " 2>&1";
    std::string out;
    FILE* p = popen(command.c_str(), "r");
    if (p == nullptr) return out;
    char buf[4096];
    while (std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    int raw = pclose(p);
    *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    return out;
  }
  nlohmann::json json() const {
    std::ifstream in(json_);
    if (!in.good()) return {};
    return nlohmann::json::parse(in, nullptr, false);
  }
  std::string dir_ = "/tmp/viaduct-cache-bench-test-" + std::to_string(getpid());
  std::string json_ = dir_ + "/run.json";
};

TEST_F(CacheBench, ClusterFailoverKillThreeTimes_EveryTrialCompletesNothingLost) {
  int status = -1;
  std::string out = bench("cluster-failover --kind kill --trials 3", &status);
  EXPECT_EQ(status, 0) << out;
  auto j = json();
  ASSERT_TRUE(j.is_object()) << "no JSON written:\n" << out;
  EXPECT_EQ(j["verdict"], "PASS") << out;
  EXPECT_EQ(j["trials"], 3) << out;
  EXPECT_EQ(j["all_complete"], true) << out;
  EXPECT_EQ(j["errors"], 0) << out;
  EXPECT_EQ(j["stale_reads"], 0) << out;
  EXPECT_EQ(j["lost_writes"], 0) << out;
  EXPECT_EQ(j["lost_in_database"], 0) << out;
  EXPECT_GT(j["operations"].get<long long>(), 0) << out;
  ASSERT_EQ(j["stall_ms"]["all"].size(), 3u) << out;
  // Each trial saw the whole story: a report, a verdict, the group notified, the return.
  for (const auto& t : j["trial_reports"]) {
    EXPECT_GT(t["stall_ms"].get<double>(), 0) << t.dump();
    EXPECT_GT(t["stall_span_ms"].get<double>(), 0) << t.dump();
    EXPECT_GT(t["longest_operation_second_after_fault_ms"].get<double>(), 0) << t.dump();
    EXPECT_GE(t["report_to_notified_ms"].get<double>(), t["report_to_verdict_ms"].get<double>())
        << t.dump();
    EXPECT_GT(t["back_to_online_ms"].get<double>(), 0) << t.dump();
  }
}

TEST_F(CacheBench, CacheFaultsTwelveSeeded_NothingLostEveryDaemonAlive) {
  int status = -1;
  std::string out = bench("cache-faults --faults 12 --seed 1", &status);
  EXPECT_NE(out.find("cache-fault-run seed=1 faults=12"), std::string::npos) << out;
  EXPECT_EQ(status, 0) << out;
  auto j = json();
  ASSERT_TRUE(j.is_object()) << "no JSON written:\n" << out;
  EXPECT_EQ(j["verdict"], "PASS") << out;
  EXPECT_EQ(j["faults"], 12) << out;
  EXPECT_EQ(j["errors"], 0) << out;
  EXPECT_EQ(j["stale_reads"], 0) << out;
  EXPECT_EQ(j["lost_writes"], 0) << out;
  EXPECT_EQ(j["lost_in_database"], 0) << out;
  EXPECT_TRUE(j["crashes"].empty()) << out;
  EXPECT_TRUE(j["not_alive_at_end"].empty()) << out;
  EXPECT_EQ(j["all_back_online"], true) << out;
  EXPECT_GT(j["operations"].get<long long>(), 0) << out;
}

}  // namespace
