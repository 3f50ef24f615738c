// `viaduct bench faults` as a whole, two short seeded runs (about 20 s together):
//   - single faults only (kill, freeze; the dead always back before the next fault): the service
//     stays available, and nothing acknowledged is lost or doubled: verdict PASS;
//   - both servers killed: the double fault takes the era's state (it lives in memory), the
//     service refuses instead of serving old state, the run starts a fresh pair: at least one
//     era ended refused, and the verdict is still PASS (nothing lost silently).
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/test_ports.hpp"

namespace {

std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  pclose(p);
  return out;
}

struct Verdict {
  int faults = 0, eras = 0, refused_eras = 0;
  unsigned long long acked = 0, lost_to_double_faults = 0;
  std::string final_total, lost, doubled, crashes, verdict;
};

// The last line of a run: `fault-run seed=S faults=F eras=E acked=A errors=E final=T lost=L
// doubled=D crashes=C refused_eras=R lost_to_double_faults=X verdict=PASS|FAIL`.
bool parse_verdict(const std::string& out, Verdict* v) {
  std::smatch m;
  if (!std::regex_search(
          out, m,
          std::regex("fault-run seed=[0-9]+ faults=([0-9]+) eras=([0-9]+) acked=([0-9]+) "
                     "errors=[0-9]+ final=([0-9a-z]+) lost=([0-9a-z]+) doubled=([0-9a-z]+) "
                     "crashes=([0-9]+) refused_eras=([0-9]+) lost_to_double_faults=([0-9]+) "
                     "verdict=(PASS|FAIL)"))) {
    return false;
  }
  v->faults = std::stoi(m[1].str());
  v->eras = std::stoi(m[2].str());
  v->acked = std::stoull(m[3].str());
  v->final_total = m[4].str();
  v->lost = m[5].str();
  v->doubled = m[6].str();
  v->crashes = m[7].str();
  v->refused_eras = std::stoi(m[8].str());
  v->lost_to_double_faults = std::stoull(m[9].str());
  v->verdict = m[10].str();
  return true;
}

class FaultRun : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string faults(const std::string& args) {
    // Probed free ports below the ephemeral range (tests/test_ports.hpp).
    int base = viaduct::testing::test_port_block();
    return run(std::string(VIADUCT_TOOL) + " bench faults " + args +
               " --max-seconds 60 --base-port " + std::to_string(base) + " --log-dir " + dir_ +
               " --json " + json_ + " 2>&1");
  }
  nlohmann::json json() const {
    std::ifstream in(json_);
    if (!in.good()) return {};
    return nlohmann::json::parse(in);
  }
  std::string dir_ = "/tmp/viaduct-fault-run-test-" + std::to_string(getpid());
  std::string json_ = dir_ + "/run.json";
};

TEST_F(FaultRun, SingleFaultsWithRestarts_NothingLostNothingDoubled_Pass) {
  std::string out = faults("--faults 8 --seed 1 --kinds kill,freeze --restart-percent 100");
  EXPECT_NE(out.find("fault-run seed=1 faults=8 sessions=2 depth=4"), std::string::npos) << out;
  Verdict v;
  ASSERT_TRUE(parse_verdict(out, &v)) << out;
  EXPECT_EQ(v.faults, 8) << out;
  EXPECT_GT(v.acked, 0u) << "no request was acknowledged:\n" << out;
  EXPECT_EQ(v.lost, "0") << out;
  EXPECT_EQ(v.doubled, "0") << out;
  EXPECT_EQ(v.crashes, "0") << out;
  EXPECT_EQ(v.verdict, "PASS") << out;
  auto j = json();
  ASSERT_FALSE(j.is_null()) << "no JSON written to " << json_;
  EXPECT_EQ(j["seed"], 1u);
  EXPECT_EQ(j["faults"], 8);
  EXPECT_EQ(j["eras"], v.eras);
  EXPECT_EQ(j["refused_eras"], v.refused_eras);
  EXPECT_EQ(j["verdict"], "PASS");
}

TEST_F(FaultRun, BothKilled_EraEndsRefusedFreshPairNext_Pass) {
  std::string out = faults("--faults 2 --seed 1 --kinds kill-both");
  Verdict v;
  ASSERT_TRUE(parse_verdict(out, &v)) << out;
  EXPECT_EQ(v.faults, 2) << out;
  EXPECT_GE(v.refused_eras, 1) << out;
  EXPECT_EQ(v.eras, 2) << "each kill-both ends an era; the second ran on a fresh pair:\n" << out;
  EXPECT_EQ(v.lost, "0") << out;
  EXPECT_EQ(v.crashes, "0") << out;
  EXPECT_EQ(v.lost_to_double_faults, v.acked) << out;
  // What the clients saw: the clear error, not a wrong answer.
  EXPECT_NE(out.find("timeout: no server answers for 'FAULTS'"), std::string::npos) << out;
  EXPECT_EQ(v.verdict, "PASS") << out;
  auto j = json();
  ASSERT_FALSE(j.is_null()) << "no JSON written to " << json_;
  EXPECT_EQ(j["refused_eras"], v.refused_eras);
  EXPECT_EQ(j["lost_to_double_faults"], v.lost_to_double_faults);
  ASSERT_EQ(j["era_reports"].size(), 2u);
  EXPECT_EQ(j["era_reports"][0]["ended"], "refused");
  EXPECT_EQ(j["era_reports"][0]["served_after_loss"], 0);
}

}  // namespace
