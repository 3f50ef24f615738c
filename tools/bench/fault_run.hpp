// `viaduct bench faults`: the randomised fault run, the judge of "nothing acknowledged is ever
// lost". An active/passive pair of `viaduct serve --service counter` on 127.0.0.1, K sessions in
// this process each keeping D "add 1" requests in flight, and F faults chosen by a seeded PRNG
// (SIGKILL, SIGSTOP/SIGCONT, double faults, restarts). At the end one more "add 0" reads the
// final total, and the acknowledged totals are checked against it:
//   - every acknowledged total is distinct (a repeat means a lost update or two actives);
//   - no acknowledged total exceeds the final total, and acked <= final (nothing acked is lost);
//   - final <= acked + unknown outcomes (errors, unanswered): nothing executed twice;
//   - no server died by a signal we did not send, or exited on its own.
// The seed is printed first, so a failing run can be replayed with --seed.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace viaduct::bench {

struct FaultRunOptions {
  std::string tool;                         // path of the viaduct binary (serve)
  std::optional<std::uint64_t> seed;        // none: drawn from std::random_device (and printed)
  int faults = 100;                         // disruptive faults; restarts come on top
  int sessions = 2;                         // K client sessions, one thread each
  int depth = 4;                            // D requests in flight per session
  int hog_cpus = 0;                         // stress-ng --cpu N beside the run (0: none)
  int max_seconds = 600;                    // the whole run, final read included
  int base_port = 32000;                    // base..base+3 on 127.0.0.1: A, B, A's and B's lookup
  int min_load_ms = 50, max_load_ms = 500;  // load between two faults
  int min_freeze_ms = 5, max_freeze_ms = 300;
  // Chance that a dead server is restarted before the next fault (both dead: always). Below 100,
  // a single kill sometimes finds the survivor alone; 100 keeps one of the two alive through
  // single faults (then only kill-both and kill-then-kill take the whole pair down).
  int restart_percent = 70;
  std::vector<std::string> kinds;        // fault kinds to draw from (empty: all)
  std::vector<std::string> server_args;  // appended to every `viaduct serve`
  std::string log_dir;                   // servers' stderr; empty: a fresh /tmp directory
  std::string json_path;
};

// The fault kinds, by the names --kinds accepts.
const std::vector<std::string>& fault_kind_names();

// 0: PASS (nothing lost, nothing doubled, no crash); 1: FAIL; 2: could not run. `interrupted`
// (SIGINT) ends the faults early; the run still brings a server back and reads the total.
int run_fault_run(const FaultRunOptions& options, const std::atomic<bool>& interrupted);

}  // namespace viaduct::bench
