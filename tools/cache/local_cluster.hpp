// A cache cluster on this machine, as real processes: a master and data servers (`viaduct
// master`, `viaduct cache-server`), each started from one generated configuration file, on
// 127.0.0.1 (or the addresses given). Kill, freeze, thaw and restart any of them. Used by the
// cluster demo, the process tests and the cluster benchmarks.
//
// Each process may run on a host of its own (host_of) and be started through a command of its
// own (prefix_of): `ip netns exec NS` puts it in a network namespace (tools/bench/netns_lab.hpp),
// so that a cut link separates it from the others. The configuration file carries every
// process's address, so each daemon finds the others wherever they run.
//
// Ports: base_port is the master's control port; data server i (0-based) listens on
// base + 2 + 2i and takes its control datagrams on base + 3 + 2i.
//
// The daemons print a line per event on stdout, a pipe to this process: a thread reads every pipe
// all the time, since a daemon whose pipe is full blocks in write() and stops serving (a master
// answering a flood of reports prints a line per verification). Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/cache/cache_client.hpp"
#include "tools/bench/child_process.hpp"
#include "transport/status.hpp"

namespace viaduct::tools {

struct LocalClusterOptions {
  std::string tool;  // the viaduct executable
  std::string dir;   // where the key, the configuration and the SQLite file go (must exist)
  std::uint16_t base_port = 27600;
  std::string host = "127.0.0.1";  // of every process not in host_of
  // "master" or a server id -> its own address (its listen and control addresses are there).
  std::map<std::string, std::string> host_of;
  // "master" or a server id -> argv put before its command line (none for the others); the
  // prefix must exec the command in the same process (as `ip netns exec` does), so that
  // kill(), freeze() and alive() reach the daemon itself.
  std::map<std::string, std::vector<std::string>> prefix_of;
  std::string provider = "ofi+tcp";
  std::uint32_t groups = 2;
  std::uint32_t servers_per_group = 2;
  std::uint32_t types_per_server = 1;            // server "s1" owns "t1a", "t1b", ...
  std::string database;                          // empty: sqlite in `dir`
  std::map<std::string, std::int64_t> tunables;  // [tunables] of the file
  // A data server's own, over the file's ([cache.group.server.tunables]): server id -> tunables.
  std::map<std::string, std::map<std::string, std::int64_t>> server_tunables;
};

class LocalCluster {
 public:
  // Writes the key and the configuration file; starts nothing.
  static Result<std::unique_ptr<LocalCluster>> create(const LocalClusterOptions& options);
  ~LocalCluster();

  // Starts the master and every data server; waits until each server holds its lease.
  Status start(int timeout_ms = 15000);
  Status start_master();
  Status start_server(const std::string& id, int timeout_ms = 15000);
  void kill(const std::string& id);    // SIGKILL, reaped
  void freeze(const std::string& id);  // SIGSTOP
  void thaw(const std::string& id);    // SIGCONT
  // The process still runs (not exited, not killed by us).
  bool alive(const std::string& id);

  // What a client of this cluster needs: the master's address and public key, and the clients'
  // key (never the secret), all from the cluster's key file.
  [[nodiscard]] Result<cluster::cache::CacheClientOptions> client_options(
      const std::string& name) const;
  [[nodiscard]] const std::string& config_path() const { return config_path_; }
  [[nodiscard]] const std::string& database() const { return database_; }
  [[nodiscard]] const std::string& key_path() const { return key_path_; }
  [[nodiscard]] std::vector<std::string> server_ids() const;
  // The types `id` owns.
  [[nodiscard]] std::vector<std::string> types_of(const std::string& id) const;
  // "master" or a server id; signals only: its output belongs to the reading thread (lines(),
  // output_of()).
  bench::ChildProcess* process(const std::string& id);
  // What the current process `id` printed so far (a copy; empty when there is none).
  std::string output_of(const std::string& id);
  // Every line the processes printed so far, each prefixed by nothing (the daemons' lines name
  // themselves), in no particular order across processes.
  std::vector<std::string> lines();

 private:
  LocalCluster() = default;
  [[nodiscard]] const std::string& host_for(const std::string& id) const;
  std::vector<std::string> argv_for(const std::string& id) const;
  // Starts `id` and waits until its output holds `ready` (or it exits, or timeout_ms passes).
  Status launch(const std::string& id, const std::string& ready, int timeout_ms);
  Status wait_ready(const std::string& id, const std::string& ready, int timeout_ms);
  void drain_loop();
  LocalClusterOptions options_;
  std::string config_path_, key_path_, database_;
  std::vector<std::string> ids_;
  std::map<std::string, std::unique_ptr<bench::ChildProcess>> processes_;
  std::vector<std::string> finished_output_;  // of processes killed or restarted
  std::mutex mutex_;                          // processes_, finished_output_
  std::atomic<bool> stop_{false};
  std::thread drainer_;
};

}  // namespace viaduct::tools
