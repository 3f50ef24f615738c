// `viaduct bench cluster-failover`: a local cache cluster (2 groups x 2 data servers, SQLite), a
// checked load from one client in this process, and N trials of a data server killed (SIGKILL)
// or frozen (SIGSTOP), round-robin over the servers (the load uses every type). A trial: the
// fault; the master's verdict and the group notified; 1 s after the fault, the server restarted
// (or SIGCONT); the master's `online` and the client out of failover mode; a settle. Per trial:
//   - stall: the longest operation that completed between the fault and 1 s after it;
//   - first report -> verdict, first report -> every group member notified (master's lines);
//   - restart/thaw -> client left failover mode, -> master's `online`;
//   - the failover server's database reads (cache misses + direct reads) from the fault to
//     `online`, against the distinct keys of the victim's types the client first read (not
//     wrote) in that window: each such key needs one read, and the rest is waste.
// `cut` (a data server isolated by a network namespace) is not offered: the local cluster runs
// every process on 127.0.0.1 of one namespace.
// Exit 1 if a trial did not complete or the workload's final check found an error, a stale read
// or a lost write.
#pragma once

#include <string>

namespace viaduct::bench {

struct ClusterFailoverOptions {
  std::string tool;           // the viaduct executable
  std::string kind = "kill";  // kill | freeze
  int trials = 20;
  int base_port = 29500;
  int settle_ms = 300;
  int warmup_ms = 1000;
  std::string json_path;
  std::string plot_path;  // PNG (gnuplot); empty: none
};

int run_cluster_failover_bench(const ClusterFailoverOptions& options);

}  // namespace viaduct::bench
