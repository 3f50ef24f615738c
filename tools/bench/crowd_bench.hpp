// `viaduct bench crowd`: what a crowd of idle clients and a stream of half-open TCP connects cost a
// working client (issue 9's connection-scale target). A `viaduct perf server` process (or, with
// --pair, the active of a `viaduct serve` pair, whose takeovers are counted too) is measured
// three ways: one working client alone; the same client while `idle` connected clients heartbeat
// and raw TCP connects (closed at once, or held open silent) keep arriving; and the server's RSS
// before and after. Reports the throughput ratio (target >= 0.80), as text and JSON.
#pragma once

#include <string>
#include <vector>

namespace viaduct::bench {

struct CrowdBenchOptions {
  std::string tool;  // path of the viaduct binary (perf server)
  // Below the kernel's ephemeral range (32768-60999): a round leaves two thousand client sockets
  // closing, and a listener on an ephemeral port then found it taken.
  int port = 29000;  // the server's port on 127.0.0.1
  int idle = 1000;   // idle connected clients
  double seconds = 5;
  int half_open_per_s = 200;             // raw TCP connects per second during the crowded phase
  int half_open_held = 100;              // of them, at most this many held open silent at once
  int crowd_poll_ms = 20;                // the idle clients check their keep-alives this often
  std::vector<std::string> server_args;  // extra arguments (e.g. --set NAME=VALUE)
  std::string json_path;
  std::string server_log = "/dev/null";  // the server's stderr
  // Crowd the active of a `viaduct serve` pair (ports port..port+3) instead of a perf server:
  // the working client is a session, and takeovers are counted.
  bool pair = false;
  int rounds = 1;  // each on a fresh server; the median ratio decides
};

int run_crowd_bench(const CrowdBenchOptions& options);

}  // namespace viaduct::bench
