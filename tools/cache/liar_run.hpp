// `viaduct bench cache-liar`: a steady checked load against a local cache cluster while a client
// holding the clients' key keeps reporting healthy servers as offline. The master must verify
// every burst by probing the server itself and never mark a reachable server offline; the load
// must see no error and no stale read. Prints and writes (JSON) the counts.
#pragma once

#include <cstdint>
#include <string>

namespace viaduct::tools {

struct LiarRunOptions {
  std::string tool;
  std::uint16_t base_port = 26700;
  double seconds = 300;
  int report_every_ms = 5;  // one false report per period, cycling over the servers
  std::string json;
};

int run_liar_run(const LiarRunOptions& options);

}  // namespace viaduct::tools
