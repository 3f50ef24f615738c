// `viaduct bench faults` as a whole: a short seeded run must reach its verdict line. A smoke test
// of the tool itself, not of the servers: it asserts the run completes and reports, not that the
// verdict is PASS (the servers still lose acknowledged work under some faults).
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include <nlohmann/json.hpp>

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

TEST(FaultRun, EightSeededFaults_PrintsSeedAndVerdictLine) {
  // Ports below the ephemeral range, distinct per test process.
  int base = 12000 + static_cast<int>(getpid() % 500) * 10;
  std::string dir = "/tmp/viaduct-fault-run-test-" + std::to_string(getpid());
  std::string json = dir + "/run.json";
  std::string out = run(std::string(VIADUCT_TOOL) +
                        " bench faults --faults 8 --seed 1 --max-seconds 120 --base-port " +
                        std::to_string(base) + " --log-dir " + dir + " --json " + json + " 2>&1");
  EXPECT_NE(out.find("fault-run seed=1 faults=8 sessions=2 depth=4"), std::string::npos) << out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      out, m,
      std::regex("fault-run seed=1 faults=8 acked=([0-9]+) errors=[0-9]+ final=[0-9a-z]+ "
                 "lost=[0-9a-z]+ doubled=[0-9a-z]+ crashes=[0-9]+ verdict=(PASS|FAIL)")))
      << out;
  EXPECT_GT(std::stoull(m[1].str()), 0u) << "no request was acknowledged:\n" << out;
  std::ifstream in(json);
  ASSERT_TRUE(in.good()) << "no JSON written to " << json;
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["seed"], 1u);
  EXPECT_EQ(j["faults"], 8);
  EXPECT_EQ(j["verdict"], m[2].str());
  in.close();
  std::filesystem::remove_all(dir);
}

}  // namespace
