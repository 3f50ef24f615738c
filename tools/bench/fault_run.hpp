// `viaduct bench faults`: the randomised fault run, the judge of "nothing acknowledged is ever
// lost". An active/passive pair of `viaduct serve --service counter` on 127.0.0.1, K sessions in
// this process each keeping D "add 1" requests in flight, and F faults chosen by a seeded PRNG
// (SIGKILL, SIGSTOP/SIGCONT, double faults, restarts).
//
// The run is cut in eras. An era is a pair started fresh (A active, B passive, B in sync before
// any load), fresh sessions and its own accounting. State lives in the servers' memory, so a
// double fault that leaves no in-sync server loses the era's counter, and the correct behaviour
// is to refuse (clients get `timeout: no server answers`): the era ends "refused", the run checks
// that no server served after the loss, counts the era's acknowledged work as lost to the double
// fault (openly, not silently), and starts the next era. With `promote`, the operator instead
// promotes the out-of-sync survivor (SIGUSR1), and the loss that accepts is measured. The last
// era ends with one more "add 0" that reads its final total. In every era:
//   - every acknowledged total is distinct (a repeat means a lost update or two actives);
//   - no acknowledged total exceeds the final total, and acked <= final (nothing acked is lost);
//   - final <= acked + unknown outcomes (errors, unanswered): nothing executed twice;
//   - after a double fault, no server served and none took over;
// and no server died by a signal we did not send, or exited on its own.
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
  // After a double fault that leaves no in-sync server: end the era (false: the survivors refuse,
  // as they should), or promote the out-of-sync survivor with SIGUSR1 and measure the loss.
  bool promote_on_double_fault = false;
  std::vector<std::string> kinds;        // fault kinds to draw from (empty: all)
  std::vector<std::string> server_args;  // appended to every `viaduct serve`
  std::string log_dir;                   // servers' stderr; empty: a fresh /tmp directory
  std::string json_path;
};

// The fault kinds, by the names --kinds accepts.
const std::vector<std::string>& fault_kind_names();

// 0: PASS (in every era nothing silently lost, nothing doubled, and every double fault refused;
// no crash); 1: FAIL; 2: could not run. `interrupted`
// (SIGINT) ends the faults early; the run still brings a server back and reads the total.
int run_fault_run(const FaultRunOptions& options, const std::atomic<bool>& interrupted);

}  // namespace viaduct::bench
