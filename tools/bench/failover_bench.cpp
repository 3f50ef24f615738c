#include "tools/bench/failover_bench.hpp"
#include "tools/perf/latency_histogram.hpp"
#include "transport/clock.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "failover/session.hpp"
#include "tools/bench/child_process.hpp"
#include "tools/bench/netns_lab.hpp"
#include "tools/bench/scratch_key.hpp"
#include "tools/bench/serve_pair.hpp"

namespace viaduct::bench {
namespace {

using Clock = std::chrono::steady_clock;

PairLayout layout_for(const FailoverBenchOptions& o, const NetnsLab* lab) {
  PairLayout l;
  auto sep = o.transport.find("://");
  l.scheme = o.transport.substr(0, sep);
  if (sep != std::string::npos) l.a_host = l.b_host = o.transport.substr(sep + 3);
  if (lab != nullptr) {
    l.a_host = lab->host_ip(0);
    l.b_host = lab->host_ip(1);
    l.a_prefix = lab->exec_prefix(0);
    l.b_prefix = lab->exec_prefix(1);
  }
  return l;
}

struct Trial {
  double stall_ms = 0, detection_ms = 0, takeover_ms = 0, lookup_ms = 0, connect_ms = 0,
         failover_ms = 0, resume_ms = 0;
  double longest_gap_ms = 0;   // longest gap anywhere in the trial (the failover or noise)
  double baseline_gap_ms = 0;  // longest gap in an equally long window before the failure
  std::uint64_t requests = 0, errors = 0;
  // How the session found the new active: "partner" (asked the partner our server named, no
  // lookup) or "lookup"; then "standby" (continued on its standby connection) or "connect".
  std::string path;
  std::vector<std::pair<double, double>> timeline;  // (ms since failure, request latency ms)
};

// The q-quantile of durations in ms, through the tools' one histogram (ns buckets).
double percentile(const std::vector<double>& v, double q) {
  perf::LatencyHistogram h;
  for (double ms : v) h.record(static_cast<std::int64_t>(ms * 1e6));
  return static_cast<double>(h.quantile(q)) / 1e6;
}

bool run_trial(const FailoverBenchOptions& o, const NetnsLab* lab, int index, Trial* t,
               std::string* why) {
  int base = o.base_port + (index % 100) * 10;
  ServePair pair(o.tool, layout_for(o, lab), "BENCH", base);
  ChildProcess& a = *pair.a;
  if (!pair.started()) {
    *why = "a server did not start (port " + std::to_string(base) + " busy?)";
    return false;
  }
  // Let the partners exchange pings, so the passive knows the active is alive (else it waits
  // out the start-up grace instead of the takeover deadline).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  failover::SessionOptions so = pair.session_options("BENCH");
  auto session = failover::Session::open(so);
  if (!session) {
    *why = session.status().to_string();
    return false;
  }
  std::uint64_t payload = 0;
  std::byte response[8];
  std::vector<std::pair<std::int64_t, std::int64_t>> done;  // (start, end) of each request
  done.reserve(1 << 20);
  std::int64_t failure_ns = 0;
  std::int64_t stop_ns = 0;
  std::int64_t start = steady_now_ns();
  for (;;) {
    std::int64_t t0 = steady_now_ns();
    if (failure_ns == 0 && t0 - start > o.before_ms * 1'000'000LL) {
      // Read the clock first: on 2 cores the signal's wake-ups may preempt this thread right
      // after kill() returns, which would hide that time from every measure below.
      failure_ns = steady_now_ns();
      if (lab != nullptr) {
        (void)lab->cut(0);  // the active's cable pulled: it runs on, unreachable
      } else {
        a.signal(o.mode == "stop" ? SIGSTOP : SIGKILL);
      }
    }
    ++payload;
    auto r = session.value()->call(std::as_bytes(std::span(&payload, 1)), response);
    std::int64_t t1 = steady_now_ns();
    if (!r) ++t->errors;
    done.emplace_back(t0, t1);
    if (failure_ns != 0 && stop_ns == 0 && session.value()->failovers() > 0) {
      stop_ns = t1 + o.after_ms * 1'000'000LL;
    }
    if (stop_ns != 0 && t1 > stop_ns) break;
    if (failure_ns != 0 && t1 - failure_ns > 30'000'000'000LL) {
      *why = "no failover within 30 s";
      return false;
    }
    if (failure_ns == 0 && session.value()->failovers() > 0) {
      *why = "the session failed over before the active was touched";
      return false;
    }
  }
  if (lab != nullptr) (void)lab->mend(0);
  t->requests = done.size();
  // The stall: the gap between the last completion before the failure and the first one after
  // it, i.e. what the failover cost the application. Gaps elsewhere in the trial are the
  // machine's own noise (on 2 cores, kernel threads such as kdamond preempt a spinning client or
  // server for several ms now and then, failover or not); they are reported apart, with the
  // longest gap in an equally long window before the failure as the same run's baseline.
  std::int64_t stall = 0, longest = 0, quiet = 0;
  std::int64_t window = done.back().second - failure_ns;
  for (std::size_t i = 1; i < done.size(); ++i) {
    std::int64_t gap = done[i].second - done[i - 1].second;
    longest = std::max(longest, gap);
    if (done[i - 1].second < failure_ns && done[i].second >= failure_ns) stall = gap;
    if (done[i].second < failure_ns && done[i].second >= failure_ns - window)
      quiet = std::max(quiet, gap);
  }
  t->longest_gap_ms = static_cast<double>(longest) / 1e6;
  t->baseline_gap_ms = static_cast<double>(quiet) / 1e6;
  t->stall_ms = static_cast<double>(stall) / 1e6;
  const auto& f = session.value()->last_failover();
  t->detection_ms = static_cast<double>(f.noticed_at_ns - failure_ns) / 1e6;
  t->lookup_ms = f.lookup_ms;
  t->connect_ms = f.connect_ms;
  t->failover_ms = f.total_ms;
  t->path = std::string(f.skipped_lookup ? "partner" : "lookup") +
            (f.used_standby ? "+standby" : "+connect");
  // The passive prints its takeover with the monotonic clock, which all processes share.
  pair.b->wait_for("took-over", 1000);
  const std::string& b_out = pair.b->output();
  if (auto at = b_out.find(" at-ns ", b_out.find("took-over")); at != std::string::npos) {
    t->takeover_ms = static_cast<double>(std::stoll(b_out.substr(at + 7)) - failure_ns) / 1e6;
  }
  // From the re-sent requests going out to the first completion after the failure.
  std::int64_t resent_ns = f.noticed_at_ns + static_cast<std::int64_t>(f.total_ms * 1e6);
  for (const auto& [s, e] : done) {
    if (e > resent_ns) {
      t->resume_ms = static_cast<double>(e - resent_ns) / 1e6;
      break;
    }
  }
  for (const auto& [s, e] : done) {
    t->timeline.emplace_back(static_cast<double>(e - failure_ns) / 1e6,
                             static_cast<double>(e - s) / 1e6);
  }
  return true;
}

// The plot is drawn from the JSON by bench/plot_failover.sh (installed as
// share/viaduct/plot_failover.sh), which re-draws any saved result the same way.
std::string plot_script(const FailoverBenchOptions& o) {
  std::string installed =
      std::filesystem::path(o.tool).parent_path().string() + "/../share/viaduct/plot_failover.sh";
  if (access(installed.c_str(), X_OK) == 0) return installed;
  return VIADUCT_SOURCE_DIR "/bench/plot_failover.sh";
}

void plot(const FailoverBenchOptions& o, const std::string& json_path) {
  std::string cmd = "'" + plot_script(o) + "' '" + json_path + "' '" + o.plot_path + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::cerr << "plot failed (" << cmd << "; needs jq and gnuplot-nox)\n";
  }
}

// A healthy pair under steady load for o.seconds: any takeover is a false one.
int run_steady(const FailoverBenchOptions& o) {
  ServePair pair(o.tool, layout_for(o, nullptr), "STEADY", o.base_port);
  if (!pair.started()) return 1;
  failover::SessionOptions so = pair.session_options("STEADY");
  auto session = failover::Session::open(so);
  if (!session) return 1;
  std::uint64_t payload = 0, requests = 0, errors = 0;
  std::byte response[8];
  std::int64_t start = steady_now_ns(), last = start, max_gap = 0;
  while (steady_now_ns() - start < o.seconds * 1'000'000'000LL) {
    ++payload;
    if (!session.value()->call(std::as_bytes(std::span(&payload, 1)), response)) ++errors;
    std::int64_t t = steady_now_ns();
    // Gaps count from the first completion: the first call includes the initial lookup.
    if (requests > 0) max_gap = std::max(max_gap, t - last);
    last = t;
    ++requests;
  }
  bool false_takeover = pair.b->output().find("took-over") != std::string::npos ||
                        pair.a->output().find("stepped-down") != std::string::npos;
  std::printf(
      "steady run: %d s, %llu requests, %llu errors, longest gap %.2f ms, failovers %llu, "
      "false takeover: %s\n",
      o.seconds, static_cast<unsigned long long>(requests), static_cast<unsigned long long>(errors),
      static_cast<double>(max_gap) / 1e6,
      static_cast<unsigned long long>(session.value()->failovers()), false_takeover ? "YES" : "no");
  if (!o.json_path.empty()) {
    std::ofstream(o.json_path) << nlohmann::json{{"mode", "none"},
                                                 {"seconds", o.seconds},
                                                 {"requests", requests},
                                                 {"errors", errors},
                                                 {"longest_gap_ms",
                                                  static_cast<double>(max_gap) / 1e6},
                                                 {"failovers", session.value()->failovers()},
                                                 {"false_takeover", false_takeover}}
                                      .dump(2)
                               << "\n";
  }
  return (errors == 0 && !false_takeover && session.value()->failovers() == 0) ? 0 : 1;
}

}  // namespace

int run_failover_bench(const FailoverBenchOptions& o) {
  if (o.mode == "none") return run_steady(o);
  std::unique_ptr<NetnsLab> lab;
  if (o.mode == "cut") {
    // The servers run in two namespaces behind a bridge, this client in a third; the cut downs
    // the active's link at the bridge.
    auto made = NetnsLab::create();
    if (!made) {
      std::cerr << "viaduct bench failover --mode cut: " << made.status().to_string() << "\n";
      return 1;
    }
    lab = std::move(made.value());
    if (Status s = lab->enter(2); !s) {
      std::cerr << s.to_string() << "\n";
      return 1;
    }
  }
  std::vector<Trial> trials;
  int failed = 0;
  for (int i = 0; i < o.trials; ++i) {
    Trial t;
    std::string why;
    if (!run_trial(o, lab.get(), i, &t, &why)) {
      ++failed;
      std::cerr << "trial " << i << " failed: " << why << "\n";
      continue;
    }
    std::printf(
        "trial %2d: stall %7.2f ms  detection %7.2f  takeover %7.2f  lookup %6.2f  connect %6.2f  "
        "resume %6.2f  (longest gap %5.2f, before the failure %5.2f)  errors %llu  %s\n",
        i, t.stall_ms, t.detection_ms, t.takeover_ms, t.lookup_ms, t.connect_ms, t.resume_ms,
        t.longest_gap_ms, t.baseline_gap_ms, static_cast<unsigned long long>(t.errors),
        t.path.c_str());
    trials.push_back(std::move(t));
  }
  if (trials.empty()) return 1;
  auto column = [&](auto member) {
    std::vector<double> v;
    for (const auto& t : trials) v.push_back(t.*member);
    return v;
  };
  nlohmann::json j{{"mode", o.mode}, {"trials", trials.size()}, {"failed_trials", failed}};
  std::uint64_t errors = 0;
  for (const auto& t : trials) errors += t.errors;
  j["application_errors"] = errors;
  j["failover_warm_standby"] = failover::tunables::failover_warm_standby.get();
  j["failover_skip_lookup"] = failover::tunables::failover_skip_lookup.get();
  std::map<std::string, int> paths;
  for (const auto& t : trials) ++paths[t.path];
  j["paths"] = paths;
  std::printf("\n%-12s %10s %10s %10s   (%zu trials, %s, application errors: %llu)\n", "", "p50 ms",
              "p99 ms", "max ms", trials.size(), o.mode.c_str(),
              static_cast<unsigned long long>(errors));
  for (auto [name, member] : {std::pair{"stall", &Trial::stall_ms},
                              {"detection", &Trial::detection_ms},
                              {"takeover", &Trial::takeover_ms},
                              {"lookup", &Trial::lookup_ms},
                              {"connect", &Trial::connect_ms},
                              {"failover", &Trial::failover_ms},
                              {"resume", &Trial::resume_ms},
                              {"gap_before_failure", &Trial::baseline_gap_ms},
                              {"longest_gap", &Trial::longest_gap_ms}}) {
    auto v = column(member);
    double p50 = percentile(v, 0.5), p99 = percentile(v, 0.99),
           mx = *std::max_element(v.begin(), v.end());
    std::printf("%-12s %10.2f %10.2f %10.2f\n", name, p50, p99, mx);
    j[name] = {{"p50_ms", p50}, {"p99_ms", p99}, {"max_ms", mx}, {"all_ms", v}};
  }
  // The first trial's requests around its failure, for the plot.
  nlohmann::json timeline = nlohmann::json::array();
  for (const auto& [x, y] : trials.front().timeline) {
    if (x > -50 && x < 1000) timeline.push_back({x, y});
  }
  j["timeline_first_trial"] = std::move(timeline);
  std::string json_path = o.json_path;
  if (json_path.empty() && !o.plot_path.empty()) json_path = o.plot_path + ".json";
  if (!json_path.empty()) {
    std::ofstream(json_path) << j.dump(2) << "\n";
    std::printf("json: %s\n", json_path.c_str());
  }
  if (!o.plot_path.empty()) {
    plot(o, json_path);
    std::printf("plot: %s\n", o.plot_path.c_str());
  }
  return (failed == 0 && errors == 0) ? 0 : 1;
}

}  // namespace viaduct::bench
