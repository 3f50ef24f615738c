// `viaduct bench cache-faults`: the randomised fault run of the cache cluster, the judge of
// "nothing acknowledged is lost". A local cluster (2 groups x 2 data servers, SQLite), the
// checked workload from one client in this process, and F faults drawn by a seeded PRNG:
//   - kill: SIGKILL of a data server, restarted after a random delay;
//   - freeze: SIGSTOP for a random 20-300 ms, then SIGCONT;
//   - double: two servers of different groups at once, each killed or frozen.
// Never both servers of one group: the master's cascade guard (cache_max_offline_percent) keeps
// one of them online anyway, so the group's types would have no server for as long as both are
// down, and the client's errors after its deadline would be the correct answer, not a finding.
// So a group is faulted only while both its members run and the master has them online.
// At the end every server is brought back, and the workload reads every key through the cluster
// and from the database: 0 errors, 0 stale reads, 0 lost writes, and every daemon still alive
// (none died by a signal we did not send), else exit 1. The seed is printed first.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

namespace viaduct::bench {

struct CacheFaultRunOptions {
  std::string tool;                   // the viaduct executable
  std::optional<std::uint64_t> seed;  // none: drawn (and printed)
  int faults = 100;
  int hog_cpus = 0;  // stress-ng --cpu N beside the run (0: none)
  int base_port = 29600;
  int max_seconds = 600;
  int min_load_ms = 50, max_load_ms = 400;  // load between two faults
  int min_freeze_ms = 20, max_freeze_ms = 300;
  int min_restart_ms = 100, max_restart_ms = 2000;  // a killed server back after this long
  int double_percent = 25;                          // faults that hit two groups at once
  std::string json_path;
};

// 0: PASS; 1: FAIL; 2: bad options.
int run_cache_fault_run(const CacheFaultRunOptions& options, const std::atomic<bool>& interrupted);

}  // namespace viaduct::bench
