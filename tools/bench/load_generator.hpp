// `viaduct load`: the client load generator. Keeps `depth` requests in flight to a named service
// through a failover::Session for a while, and reports throughput, latency percentiles, errors
// and failovers (text, or JSON). Every answer is checked: it must echo its request, and arrive
// once. Meant against `viaduct serve` (an echo service); SIGINT stops it early.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "failover/server_proof.hpp"
#include "failover/udp_socket.hpp"

namespace viaduct::bench {

struct LoadOptions {
  std::string name;
  std::vector<failover::UdpEndpoint> cluster;  // lookup responders
  std::uint32_t depth = 8;
  std::uint32_t size = 64;  // payload bytes (at least 8: the request's sequence number)
  double seconds = 10;
  double report_every_s = 1;  // a progress line this often (0: none)
  bool json = false;
  // Where the JSON summary goes (the CLI's printer, which adds a failure's "error").
  std::function<void(nlohmann::json)> print_json;
  std::optional<failover::PublicKey> server_key;  // pinned: servers must prove the name
};

int run_load(const LoadOptions& options, const std::atomic<bool>& stop);

}  // namespace viaduct::bench
