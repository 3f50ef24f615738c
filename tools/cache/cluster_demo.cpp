#include "tools/cache/cluster_demo.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cluster/cache/cache_client.hpp"
#include "cluster/member_auth.hpp"
#include "tools/cache/cache_workload.hpp"
#include "tools/cache/local_cluster.hpp"
#include "transport/clock.hpp"

namespace viaduct::tools {

namespace cc = viaduct::cluster::cache;

namespace {

struct Event {
  std::int64_t at_ns = 0;
  std::string who;
  std::string what;
};

// "... at-ns N ..." -> N, and the line without it.
bool parse_line(const std::string& line, Event* event) {
  auto at = line.find(" at-ns ");
  if (at == std::string::npos) return false;
  std::size_t end = line.find(' ', at + 7);
  event->at_ns = std::stoll(line.substr(at + 7, end - (at + 7)));
  std::string rest = line.substr(0, at) + (end == std::string::npos ? "" : line.substr(end));
  auto space = rest.find(' ');
  event->who = rest.substr(0, space);
  event->what = space == std::string::npos ? "" : rest.substr(space + 1);
  if (event->who == "cache-server") {  // "cache-server s2 ..." -> "s2"
    auto next = event->what.find(' ');
    event->who = event->what.substr(0, next);
    event->what = next == std::string::npos ? "" : event->what.substr(next + 1);
  }
  return true;
}

// Lines that are the story (the rest — leases, maps without change — is routine).
bool tells_the_story(const Event& e) {
  for (std::string_view skip : {"lease held", "no change", "load-start", "load-end"}) {
    if (e.what.find(skip) != std::string::npos) return false;
  }
  return true;
}

}  // namespace

int run_cluster_demo(const ClusterDemoOptions& options) {
  std::string dir = (std::filesystem::temp_directory_path() / "viaduct-demo-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    std::cerr << "viaduct demo: cannot make a temporary directory\n";
    return 1;
  }
  LocalClusterOptions cluster_options;
  cluster_options.tool = options.tool;
  cluster_options.dir = dir;
  cluster_options.base_port = options.base_port;
  cluster_options.types_per_server = 2;
  cluster_options.tunables = {{"cache_failover_window_ms", 500}};
  auto created = LocalCluster::create(cluster_options);
  if (!created) {
    std::cerr << "viaduct demo: " << created.status().to_string() << "\n";
    return 1;
  }
  auto& cluster = *created.value();
  std::cout << "=== a cache cluster on 127.0.0.1 (ofi+tcp), SQLite in " << cluster.database()
            << "\n    master; group g1: s1 s2; group g2: s3 s4; each server owns two types\n";
  if (Status s = cluster.start(); !s) {
    std::cerr << "viaduct demo: " << s.to_string() << "\n";
    return 1;
  }
  (void)cc::tunables::cache_failover_window_ms.set(500);
  auto client_options = cluster.client_options("demo-load");
  if (!client_options) {
    std::cerr << "viaduct demo: " << client_options.status().to_string() << "\n";
    return 1;
  }
  auto client = cc::CacheClient::open(client_options.value());
  if (!client) {
    std::cerr << "viaduct demo: " << client.status().to_string() << "\n";
    return 1;
  }
  std::mutex events_mutex;
  std::vector<Event> events;
  auto add = [&](std::int64_t at, std::string who, std::string what) {
    std::lock_guard lock(events_mutex);
    events.push_back({at, std::move(who), std::move(what)});
  };
  client.value()->on_event = [&](std::string_view what, std::string_view server) {
    if (what.rfind("map ", 0) == 0) return;
    add(steady_now_ns(), "client", std::string(what) + " " + std::string(server));
  };
  struct Sample {
    std::int64_t at_ns;
    std::int64_t latency_ns;
  };
  std::vector<Sample> samples;
  samples.reserve(1 << 20);
  CacheWorkloadOptions load;
  load.seconds = options.seconds;
  load.keys_per_type = 64;
  load.on_operation = [&samples](const CacheOperation& op) {
    samples.push_back({op.at_ns, op.latency_ns});
  };
  CacheWorkload workload(*client.value(), load);
  std::atomic<bool> stop{false};
  std::int64_t start = steady_now_ns();
  std::cout << "=== client load for " << options.seconds << " s; s1 killed at " << options.kill_at
            << " s, restarted at " << options.restart_at << " s\n";
  std::thread runner([&] { workload.run(stop); });
  auto sleep_until = [&](double seconds) {
    std::int64_t at = start + static_cast<std::int64_t>(seconds * 1e9);
    while (steady_now_ns() < at) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  };
  sleep_until(options.kill_at);
  std::int64_t kill_ns = steady_now_ns();
  cluster.kill("s1");
  add(kill_ns, "demo", "SIGKILL s1");
  sleep_until(options.restart_at);
  add(steady_now_ns(), "demo", "restart s1");
  Status restarted = cluster.start_server("s1");
  runner.join();
  workload.verify(cluster.database());
  const auto& r = workload.report();

  for (const auto& line : cluster.lines()) {
    Event e;
    if (parse_line(line, &e)) add(e.at_ns, e.who, e.what);
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const Event& a, const Event& b) { return a.at_ns < b.at_ns; });
  std::cout << "\n=== timeline (ms from the kill; every process's own clock is CLOCK_MONOTONIC)\n";
  for (const auto& e : events) {
    if (e.at_ns < kill_ns - 1'000'000 || !tells_the_story(e)) continue;
    std::printf("%+10.3f  %-7s %s\n", static_cast<double>(e.at_ns - kill_ns) / 1e6, e.who.c_str(),
                e.what.c_str());
  }
  auto first = [&](std::string_view who, std::string_view what) -> std::int64_t {
    for (const auto& e : events) {
      if (e.at_ns >= kill_ns && e.who == who && e.what.find(what) != std::string::npos) {
        return e.at_ns;
      }
    }
    return 0;
  };
  std::int64_t entered = first("client", "failover-enter s1");
  std::int64_t report = first("master", "report s1");
  std::int64_t verdict = first("master", "verdict-offline s1");
  std::int64_t notified = first("master", "group-notified s1");
  std::int64_t temporary = first("s2", "temporary: serving the types of s1");
  std::int64_t online = first("master", "online s1");
  std::int64_t left = first("client", "failover-leave s1");
  std::int64_t stall = 0;
  for (const auto& s : samples) {
    if (s.at_ns >= kill_ns && s.at_ns - s.latency_ns <= kill_ns + 1'000'000'000) {
      stall = std::max(stall, s.latency_ns);
    }
  }
  auto ms = [](std::int64_t from, std::int64_t to) {
    return from == 0 || to == 0 ? -1.0 : static_cast<double>(to - from) / 1e6;
  };
  bool story =
      entered && report && verdict && notified && temporary && online && left && restarted.is_ok();
  std::printf(
      "\n=== summary\n  operations %llu (reads %llu, writes %llu), errors %llu, stale reads %llu, "
      "wrong values %llu, lost writes %llu (through the cluster) and %llu (in the database)\n"
      "  first report -> verdict %.3f ms, -> group notified %.3f ms; the client's longest stall "
      "after the kill %.3f ms\n  restart -> online %.3f ms; client back on s1 %.3f ms after "
      "online\n",
      static_cast<unsigned long long>(r.operations), static_cast<unsigned long long>(r.reads),
      static_cast<unsigned long long>(r.writes), static_cast<unsigned long long>(r.errors),
      static_cast<unsigned long long>(r.stale_reads),
      static_cast<unsigned long long>(r.wrong_values),
      static_cast<unsigned long long>(r.lost_writes),
      static_cast<unsigned long long>(r.lost_in_database), ms(report, verdict),
      ms(report, notified), static_cast<double>(stall) / 1e6,
      ms(first("demo", "restart s1"), online), ms(online, left));
  if (!r.first_error.empty()) std::printf("  first problem: %s\n", r.first_error.c_str());
  if (!story) std::printf("  the story is incomplete: a step above did not happen\n");
  if (!options.json.empty()) {
    nlohmann::json doc = {{"operations", r.operations},
                          {"errors", r.errors},
                          {"stale_reads", r.stale_reads},
                          {"lost_writes", r.lost_writes},
                          {"lost_in_database", r.lost_in_database},
                          {"report_to_verdict_ms", ms(report, verdict)},
                          {"report_to_group_notified_ms", ms(report, notified)},
                          {"client_stall_ms", static_cast<double>(stall) / 1e6},
                          {"online_to_client_back_ms", ms(online, left)},
                          {"held", r.held() && story}};
    std::ofstream(options.json) << doc.dump(2) << "\n";
  }
  if (!options.png.empty()) {
    std::string data = dir + "/samples.dat";
    std::string marks = dir + "/events.gp";
    {
      std::ofstream out(data);
      for (const auto& s : samples) {
        out << static_cast<double>(s.at_ns - start) / 1e9 << " "
            << static_cast<double>(s.latency_ns) / 1e3 << "\n";
      }
      std::ofstream gp(marks);
      int n = 0;
      for (auto [label, at] : {std::pair{"kill", kill_ns},
                               {"verdict", verdict},
                               {"restart", first("demo", "restart s1")},
                               {"online", online},
                               {"client back", left}}) {
        if (at == 0) continue;
        double x = static_cast<double>(at - start) / 1e9;
        gp << "set arrow " << ++n << " from " << x << ", graph 0 to " << x
           << ", graph 1 nohead dt 2\n";
        gp << "set label " << n << " '" << label << "' at " << x << ", graph " << 0.95 - 0.06 * n
           << " offset 0.3,0\n";
      }
    }
    std::string script = "set terminal pngcairo size 1200,500; set output '" + options.png +
                         "'; set logscale y; set xlabel 'seconds'; set ylabel 'operation latency "
                         "(us)'; set title 'viaduct cache cluster: s1 killed and restarted under "
                         "load (0 errors, 0 stale reads)'; load '" +
                         marks + "'; plot '" + data + "' using 1:2 with dots title 'operations'";
    std::string command = "gnuplot -e \"" + script + "\" 2>&1";
    if (std::system(command.c_str()) == 0) {
      std::cout << "  plot: " << options.png << "\n";
    } else {
      std::cout << "  plot: gnuplot failed (installed by scripts/install-deps.sh)\n";
    }
  }
  bool held = r.held() && story;
  std::cout << (held ? "=== held: 0 errors, 0 stale reads, nothing acknowledged lost\n"
                     : "=== FAILED\n");
  std::filesystem::remove_all(dir);
  return held ? 0 : 1;
}

}  // namespace viaduct::tools
