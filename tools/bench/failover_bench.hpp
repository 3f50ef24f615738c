// `viaduct bench failover`: real active/passive `viaduct serve` processes on 127.0.0.1, a steady
// request stream through a failover::Session, and the active killed (SIGKILL) or frozen (SIGSTOP)
// mid-stream, N times. Per trial: the stall the application saw (longest gap between two
// completions), detection (signal → session notices), lookup and reconnect times.
#pragma once

#include <string>

namespace viaduct::bench {

struct FailoverBenchOptions {
  std::string tool;                               // path of the viaduct binary (serve)
  std::string transport = "ofi+tcp://127.0.0.1";  // scheme://host of both servers (port added)
  std::string mode = "kill";  // kill | stop | cut | none (steady run: count false takeovers)
  int seconds = 300;          // length of a --mode none run
  int trials = 20;
  int base_port = 30000;
  int before_ms = 400;  // steady stream before the failure (> after_ms: the noise baseline)
  int after_ms = 300;   // and after the failover completed
  std::string json_path;
  std::string plot_path;  // PNG (gnuplot); empty: no plot
};

int run_failover_bench(const FailoverBenchOptions& options);

}  // namespace viaduct::bench
