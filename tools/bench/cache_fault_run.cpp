#include "tools/bench/cache_fault_run.hpp"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "tools/bench/cache_lab.hpp"
#include "tools/bench/child_process.hpp"
#include "transport/clock.hpp"

namespace viaduct::bench {
namespace {

constexpr std::int64_t kMs = 1'000'000;
constexpr int kSettleTimeoutMs = 30000;  // at the end: every server back online
// A server thawed or restarted is faultable again (its partner too) only after this: a verdict
// reached while it was frozen (lease 100 ms + verification) or its return shows in the master's
// lines by then.
constexpr std::int64_t kQuietNs = 500 * kMs;

enum class Running { kUp, kFrozen, kDead };

struct Server {
  std::string id;
  std::size_t group = 0;
  Running running = Running::kUp;
  std::int64_t due_ns = 0;    // frozen: thaw then; dead: restart then
  std::int64_t quiet_ns = 0;  // back (thawed, restarted) since: the master's lines may follow
  // The master's view, from its lines: report -> verifying, verified-alive -> online,
  // verdict-offline/offline -> offline, returning, online.
  std::string master_state = "online";
};

class CacheFaultRun {
 public:
  CacheFaultRun(const CacheFaultRunOptions& o, std::uint64_t seed,
                const std::atomic<bool>& interrupted)
      : o_(o), seed_(seed), rng_(seed), interrupted_(interrupted) {}
  int run();

 private:
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  void follow_master();
  void tend(std::int64_t now);
  bool settled(const Server& s) const {
    return s.running == Running::kUp && s.master_state == "online" &&
           steady_now_ns() >= s.quiet_ns + kQuietNs;
  }
  void inject();
  bool all_online() const;
  void start_hog();

  const CacheFaultRunOptions& o_;
  std::uint64_t seed_;
  std::mt19937_64 rng_;
  const std::atomic<bool>& interrupted_;
  std::unique_ptr<CacheLab> lab_;
  std::vector<Server> servers_;
  std::size_t master_offset_ = 0;
  int faults_ = 0, restarts_ = 0, thaws_ = 0;
  std::map<std::string, int> by_kind_;
  std::vector<std::string> crashes_;
  nlohmann::json events_ = nlohmann::json::array();
  std::int64_t start_ns_ = 0;
  std::unique_ptr<ChildProcess> hog_;
};

void CacheFaultRun::follow_master() {
  const std::string out = lab_->cluster().output_of("master");
  for (;;) {
    std::size_t end = out.find('\n', master_offset_);
    if (end == std::string::npos) return;
    std::string_view line(out.data() + master_offset_, end - master_offset_);
    master_offset_ = end + 1;
    if (!line.starts_with("master ")) continue;
    line.remove_prefix(7);
    std::string_view what = line.substr(0, line.find(' '));
    line.remove_prefix(std::min(line.size(), what.size() + 1));
    std::string_view id = line.substr(0, line.find(' '));
    for (auto& s : servers_) {
      if (s.id != id) continue;
      if (what == "report" || what == "verdict-deferred") {
        s.master_state = "verifying";
      } else if (what == "verified-alive" || what == "online") {
        s.master_state = "online";
      } else if (what == "verdict-offline" || what == "offline") {
        s.master_state = "offline";
      } else if (what == "returning") {
        s.master_state = "returning";
      }
    }
  }
}

// Thaws and restarts that are due; daemons that died without our signal.
void CacheFaultRun::tend(std::int64_t now) {
  auto& cluster = lab_->cluster();
  for (auto& s : servers_) {
    if (s.running == Running::kFrozen && now >= s.due_ns) {
      cluster.thaw(s.id);
      s.running = Running::kUp;
      s.quiet_ns = now;
      ++thaws_;
    } else if (s.running == Running::kDead && now >= s.due_ns) {
      if (Status st = cluster.start_server(s.id); !st) {
        crashes_.push_back(s.id + " did not restart: " + st.to_string());
        s.due_ns = steady_now_ns() + 1000 * kMs;
        continue;
      }
      s.running = Running::kUp;
      s.quiet_ns = steady_now_ns();
      ++restarts_;
    } else if (s.running == Running::kUp && !cluster.alive(s.id)) {
      crashes_.push_back(s.id + " died on its own at " +
                         std::to_string(static_cast<double>(now - start_ns_) / 1e9) + " s");
      s.running = Running::kDead;
      s.due_ns = now;
    }
  }
  if (!cluster.alive("master")) {
    crashes_.push_back("the master died");
    (void)cluster.start_master();
  }
}

void CacheFaultRun::inject() {
  std::vector<std::size_t> groups;  // groups with both members up and online
  for (std::size_t g = 0; g * 2 < servers_.size(); ++g) {
    if (settled(servers_[2 * g]) && settled(servers_[2 * g + 1])) groups.push_back(g);
  }
  if (groups.empty()) return;
  std::shuffle(groups.begin(), groups.end(), rng_);
  bool two = groups.size() >= 2 && uniform(0, 99) < o_.double_percent;
  groups.resize(two ? 2 : 1);
  std::string kind;
  nlohmann::json event{{"at_s", static_cast<double>(steady_now_ns() - start_ns_) / 1e9}};
  for (std::size_t g : groups) {
    Server& s = servers_[2 * g + static_cast<std::size_t>(uniform(0, 1))];
    bool kill = uniform(0, 1) == 0;
    std::int64_t now = steady_now_ns();
    if (kill) {
      lab_->cluster().kill(s.id);
      s.running = Running::kDead;
      s.due_ns = now + uniform(o_.min_restart_ms, o_.max_restart_ms) * kMs;
    } else {
      lab_->cluster().freeze(s.id);
      s.running = Running::kFrozen;
      s.due_ns = now + uniform(o_.min_freeze_ms, o_.max_freeze_ms) * kMs;
    }
    std::string what = kill ? "kill" : "freeze";
    kind += (kind.empty() ? "" : "+") + what;
    event["victims"].push_back(
        {{"server", s.id}, {"how", what}, {"for_ms", static_cast<double>(s.due_ns - now) / 1e6}});
  }
  if (two) kind = "double " + kind;
  event["kind"] = kind;
  ++by_kind_[kind];
  ++faults_;
  events_.push_back(event);
}

bool CacheFaultRun::all_online() const {
  for (const auto& s : servers_) {
    if (!settled(s)) return false;
  }
  return true;
}

void CacheFaultRun::start_hog() {
  if (o_.hog_cpus <= 0) return;
  // env finds stress-ng on PATH and becomes it: the pid we signal is stress-ng's.
  hog_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{"/usr/bin/env", "stress-ng", "--cpu", std::to_string(o_.hog_cpus),
                               "--timeout", std::to_string(o_.max_seconds + 60) + "s"},
      lab_->dir() + "/stress-ng.err");
}

int CacheFaultRun::run() {
  std::printf("cache-fault-run seed=%llu faults=%d hog=%d\n",
              static_cast<unsigned long long>(seed_), o_.faults, o_.hog_cpus);
  std::fflush(stdout);
  CacheLabOptions lo;
  lo.tool = o_.tool;
  lo.base_port = o_.base_port;
  lo.workload.seed = seed_;
  auto started = CacheLab::start(lo);
  if (!started) {
    std::fprintf(stderr, "cache-fault-run: %s\n", started.status().to_string().c_str());
    return 1;
  }
  lab_ = std::move(started.value());
  start_ns_ = steady_now_ns();
  std::int64_t fault_deadline =
      start_ns_ + static_cast<std::int64_t>(o_.max_seconds) * 1000 * kMs - 60'000 * kMs;
  auto ids = lab_->cluster().server_ids();
  for (std::size_t i = 0; i < ids.size(); ++i) servers_.push_back({ids[i], i / 2});
  start_hog();
  std::int64_t next_fault = start_ns_ + uniform(o_.min_load_ms, o_.max_load_ms) * kMs;
  while (faults_ < o_.faults && !interrupted_.load() && steady_now_ns() < fault_deadline) {
    follow_master();
    std::int64_t now = steady_now_ns();
    tend(now);
    if (now >= next_fault) {
      int before = faults_;
      inject();
      if (faults_ != before) {
        next_fault = steady_now_ns() + uniform(o_.min_load_ms, o_.max_load_ms) * kMs;
        if (faults_ % 10 == 0) {
          std::fprintf(stderr, "cache-fault-run: %d/%d faults, %.1f s, %llu operations\n", faults_,
                       o_.faults, static_cast<double>(steady_now_ns() - start_ns_) / 1e9,
                       static_cast<unsigned long long>(lab_->operation_count()));
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  bool stopped_early = faults_ < o_.faults;
  // Everything back: thaws and restarts now, then every server online in the master's map.
  for (auto& s : servers_) s.due_ns = 0;
  std::int64_t settle_end = steady_now_ns() + kSettleTimeoutMs * kMs;
  bool settled_all = false;
  while (steady_now_ns() < settle_end) {
    follow_master();
    tend(steady_now_ns());
    if ((settled_all = all_online())) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // load on the whole cluster
  if (hog_) {
    hog_->signal(SIGINT);  // stress-ng stops its workers; SIGKILL would orphan them
    if (!hog_->wait_exit(5000)) hog_->kill_hard();
    hog_.reset();
  }
  const auto& r = lab_->stop_and_verify();
  std::vector<std::string> dead;
  for (const auto& s : servers_) {
    if (!lab_->cluster().alive(s.id)) dead.push_back(s.id);
  }
  if (!lab_->cluster().alive("master")) dead.push_back("master");
  bool pass = r.held() && crashes_.empty() && dead.empty() && settled_all && !stopped_early;
  double seconds = static_cast<double>(steady_now_ns() - start_ns_) / 1e9;
  std::printf("faults: %d in %.1f s (", faults_, seconds);
  bool first = true;
  for (const auto& [k, n] : by_kind_) {
    std::printf("%s%s %d", first ? "" : ", ", k.c_str(), n);
    first = false;
  }
  std::printf("); %d restarts, %d thaws; client failovers %llu\n", restarts_, thaws_,
              static_cast<unsigned long long>(lab_->client_stats().failover_entered));
  for (const auto& c : crashes_) std::printf("crash: %s\n", c.c_str());
  for (const auto& d : dead) std::printf("not alive at the end: %s\n", d.c_str());
  if (!settled_all)
    std::printf("not every server was back online within %d s\n", kSettleTimeoutMs / 1000);
  if (!r.first_error.empty()) std::printf("first error: %s\n", r.first_error.c_str());
  std::printf(
      "cache-fault-run seed=%llu faults=%d operations=%llu errors=%llu stale=%llu wrong=%llu "
      "lost=%llu lost_in_database=%llu crashes=%zu verdict=%s\n",
      static_cast<unsigned long long>(seed_), faults_,
      static_cast<unsigned long long>(r.operations), static_cast<unsigned long long>(r.errors),
      static_cast<unsigned long long>(r.stale_reads),
      static_cast<unsigned long long>(r.wrong_values),
      static_cast<unsigned long long>(r.lost_writes),
      static_cast<unsigned long long>(r.lost_in_database), crashes_.size() + dead.size(),
      pass ? "PASS" : "FAIL");
  std::fflush(stdout);
  if (!o_.json_path.empty()) {
    nlohmann::json j{{"seed", seed_},
                     {"faults", faults_},
                     {"faults_requested", o_.faults},
                     {"faults_by_kind", by_kind_},
                     {"restarts", restarts_},
                     {"thaws", thaws_},
                     {"hog_cpus", o_.hog_cpus},
                     {"seconds", seconds},
                     {"stopped_early", stopped_early},
                     {"operations", r.operations},
                     {"reads", r.reads},
                     {"writes", r.writes},
                     {"errors", r.errors},
                     {"stale_reads", r.stale_reads},
                     {"wrong_values", r.wrong_values},
                     {"lost_writes", r.lost_writes},
                     {"lost_in_database", r.lost_in_database},
                     {"max_latency_ms", static_cast<double>(r.max_latency_ns) / 1e6},
                     {"client_failovers", lab_->client_stats().failover_entered},
                     {"all_back_online", settled_all},
                     {"crashes", crashes_},
                     {"not_alive_at_end", dead},
                     {"first_error", r.first_error},
                     {"events", events_},
                     {"verdict", pass ? "PASS" : "FAIL"}};
    std::ofstream(o_.json_path) << j.dump(2) << "\n";
  }
  if (!pass) {
    lab_->keep_dir();
    std::printf("logs kept in %s\n", lab_->dir().c_str());
  }
  return pass ? 0 : 1;
}

}  // namespace

int run_cache_fault_run(const CacheFaultRunOptions& options, const std::atomic<bool>& interrupted) {
  if (options.faults < 0 || options.min_load_ms > options.max_load_ms ||
      options.min_freeze_ms > options.max_freeze_ms ||
      options.min_restart_ms > options.max_restart_ms || options.max_seconds < 70) {
    std::fprintf(stderr, "cache-fault-run: bad options (max-seconds >= 70)\n");
    return 2;
  }
  std::uint64_t seed = options.seed ? *options.seed
                                    : (static_cast<std::uint64_t>(std::random_device{}()) << 32) |
                                          std::random_device{}();
  CacheFaultRun run(options, seed, interrupted);
  return run.run();
}

}  // namespace viaduct::bench
