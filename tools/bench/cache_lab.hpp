// What the cache cluster benches share (`viaduct bench cluster-failover`, `viaduct bench
// cache-faults`): a local cluster of real processes in a fresh directory, a client of it in this
// process running the checked workload on its own thread (every operation and client event
// recorded with its time), and the daemons' time-stamped lines. The daemons' `at-ns` values and
// this process's steady_now_ns() are the same clock (CLOCK_MONOTONIC, one machine).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/cache/cache_client.hpp"
#include "tools/cache/cache_workload.hpp"
#include "tools/cache/local_cluster.hpp"

namespace viaduct::bench {

struct CacheLabOptions {
  std::string tool;  // the viaduct executable
  int base_port = 29500;
  std::map<std::string, std::int64_t> tunables;  // the daemons' [tunables]
  // Where each daemon runs and how it is started (tools/cache/local_cluster.hpp): a cut link
  // puts some of them in network namespaces. Empty: all on 127.0.0.1.
  std::map<std::string, std::string> host_of;
  std::map<std::string, std::vector<std::string>> prefix_of;
  tools::CacheWorkloadOptions workload;  // `seconds` and `operations` ignored: until stop
};

struct TimedLine {
  std::int64_t at_ns = 0;
  std::string text;
};

// `at-ns N` of a daemon's line; 0 when it has none.
std::int64_t at_ns_of(std::string_view line);
// The lines of `text` that start with `prefix`, with their at-ns.
std::vector<TimedLine> timed_lines(const std::string& text, std::string_view prefix);

// p50, p99 (nearest rank), max and every value, for the benches' JSON.
nlohmann::json summary_json(std::vector<double> values);
// Runs bench/SCRIPT JSON PNG (installed as share/viaduct/SCRIPT); says so on stderr if it failed.
void plot_with(const std::string& tool, const std::string& script, const std::string& json_path,
               const std::string& png_path);

class CacheLab {
 public:
  struct Operation {
    std::int64_t at_ns, latency_ns;
    bool write;
    std::string_view type;  // into the workload's types (lives as long as the lab)
    std::uint32_t key;
  };
  struct ClientEvent {
    std::int64_t at_ns;
    std::string what, server;
  };

  // Starts the cluster (2 groups x 2 servers, SQLite), opens the client, starts the load.
  static Result<std::unique_ptr<CacheLab>> start(const CacheLabOptions& options);
  // Stops the load and every daemon; the directory is removed unless keep_dir().
  ~CacheLab();
  CacheLab(const CacheLab&) = delete;
  CacheLab& operator=(const CacheLab&) = delete;

  tools::LocalCluster& cluster() { return *cluster_; }
  [[nodiscard]] const std::string& dir() const { return dir_; }
  void keep_dir() { keep_dir_ = true; }

  // The at-ns of the first master line starting with `prefix` ("master online s1 ") at or after
  // `since`; waits up to timeout_ms for it.
  std::optional<std::int64_t> wait_master(const std::string& prefix, std::int64_t since,
                                          int timeout_ms);
  // The same for the client's events ("failover-leave", "s1").
  std::optional<std::int64_t> wait_client(const std::string& what, const std::string& server,
                                          std::int64_t since, int timeout_ms);
  // The operations that completed in [from_ns, to_ns].
  std::vector<Operation> operations(std::int64_t from_ns, std::int64_t to_ns);
  std::uint64_t operation_count();
  // For a failure's report: the master's lines and the client's events since `since`, and the
  // last operation's completion time.
  std::string describe_since(std::int64_t since);

  // Stops the load (joins its thread), then reads every key back through the cluster and from
  // the database; the report says whether everything held.
  const tools::CacheWorkloadReport& stop_and_verify();
  [[nodiscard]] const cluster::cache::CacheClientStats& client_stats() const;

 private:
  CacheLab() = default;
  std::string dir_;
  bool keep_dir_ = false;
  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<cluster::cache::CacheClient> client_;
  std::unique_ptr<tools::CacheWorkload> workload_;
  std::atomic<bool> stop_{false};
  std::thread load_;
  std::mutex mutex_;  // guards the two below (the load thread appends)
  std::vector<Operation> operations_;
  std::vector<ClientEvent> events_;
};

}  // namespace viaduct::bench
