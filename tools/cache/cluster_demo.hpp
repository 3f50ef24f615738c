// `viaduct demo cluster`: the cache cluster at work, on the embedded defaults (SQLite, ofi+tcp,
// 127.0.0.1). A master, two failover groups of two data servers, a checked client workload; one
// data server SIGKILLed under the load and restarted later. Prints the merged timeline of every
// process (the client entering failover mode, the master's verdict and its time, the notices, the
// temporary caching, the restart, the re-check, online, the client leaving failover mode) and
// draws it (PNG, gnuplot). Exits 0 only if the application saw 0 errors and 0 stale reads, no
// acknowledged write was lost, and every step of the story happened.
#pragma once

#include <cstdint>
#include <string>

namespace viaduct::tools {

struct ClusterDemoOptions {
  std::string tool;  // the viaduct executable
  std::uint16_t base_port = 26600;
  double seconds = 7;     // of load in all
  double kill_at = 1.5;   // seconds into the load
  double restart_at = 4;  // seconds into the load
  std::string png;        // where to draw; empty: no plot
  std::string json;       // the summary as JSON; empty: none
};

int run_cluster_demo(const ClusterDemoOptions& options);

}  // namespace viaduct::tools
