// `viaduct bench cluster-failover`: a local cache cluster (2 groups x 2 data servers, SQLite), a
// checked load from one client in this process, and N trials of a data server killed (SIGKILL),
// frozen (SIGSTOP) or cut off (its network link down), round-robin over the servers for kill and
// freeze (the load uses every type). A trial: the fault; the master's verdict and the group
// notified; 1 s after the fault, the server restarted (or SIGCONT, or its link mended); the
// master's `online` and the client out of failover mode; a settle. Per trial:
//   - stall: the longest operation that ran between the fault and the completion of the client's
//     first operation on the victim's types begun after the fault took effect: that operation
//     found the victim gone and waited for the failover (detection, report, verdict,
//     re-routing). Beside it, for comparison, the longest operation in the second after the
//     fault and in the second before it: with one operation every ~60 us, a second-long
//     window's maximum is the machine's noise (scheduling, page faults, fsync), failover or not;
//     and where the span went: fault -> in effect (a kill returns once the victim is reaped),
//     -> the client entered failover mode, -> the master had the report, and the group
//     notified -> the first operation served;
//   - first report -> verdict, first report -> every group member notified (master's lines);
//   - restart/thaw/mend -> client left failover mode, -> master's `online`;
//   - the failover server's database reads (cache misses + direct reads) from the fault to
//     `online`, against the distinct keys of the victim's types the client first read (not
//     wrote) in that window: each such key needs one read, and the rest is waste.
// `cut` runs the cluster in network namespaces (tools/bench/netns_lab.hpp; needs root and
// iproute2, else exit 2 saying so): s1 in host 0, the master and the other servers in host 1,
// this process (the client) in host 2. The fault downs host 0's link at the switch: the
// process keeps running and nothing tells anyone (no FIN, RST or ICMP), so the master's verdict
// is `silent`, given once s1's lease ran out, as for a frozen server. Every cut trial has s1 as
// its victim (and s2 as its failover server), not round-robin: only host 0 can be cut without
// cutting the master, and putting each victim in turn in host 0 would mean a fresh cluster, a
// fresh client and a cold cache per trial, which the other kinds do not pay. The four servers
// are alike (same code, one type each, the load spread evenly), so s1's numbers stand for any
// server's; each trial finds s1 where the previous one left it, back online with s2 having
// dropped its types, as a round-robin trial finds its victim. The fault and the mend are timed
// when their `ip` command returns. After the mend, host 0's address resolutions begun during
// the cut (its neighbour table was flushed when its link went down) are retried on the kernel's
// timer (retrans_time_ms, 1 s), not at once: s1's first packets to the master or a client may
// wait up to that long, which shows as a mend -> online of up to ~1 s now and then. A client
// whose first ping after its failover window (cache_failover_window_ms, 1 s here) falls into
// that gap stays away another window: mend -> client leave is then ~1.15 s instead of ~0.15 s.
// Both are what a host sees when its own cable comes back, not the harness.
// Exit 1 if a trial did not complete or the workload's final check found an error, a stale read
// or a lost write.
#pragma once

#include <string>

namespace viaduct::bench {

struct ClusterFailoverOptions {
  std::string tool;           // the viaduct executable
  std::string kind = "kill";  // kill | freeze | cut
  int trials = 20;
  int base_port = 29500;
  int settle_ms = 300;
  int warmup_ms = 1000;
  std::string json_path;
  std::string plot_path;  // PNG (gnuplot); empty: none
};

int run_cluster_failover_bench(const ClusterFailoverOptions& options);

}  // namespace viaduct::bench
