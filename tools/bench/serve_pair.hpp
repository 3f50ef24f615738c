// An active/passive pair of `viaduct serve` processes for the benches: where they run, how they
// are started, and the session options that reach them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "failover/session.hpp"
#include "tools/bench/child_process.hpp"

namespace viaduct::bench {

// Where the two servers run: transport scheme, each one's host, and an argv prefix that starts
// it (e.g. `ip netns exec NS` for a cut-link trial).
struct PairLayout {
  std::string scheme = "ofi+tcp";
  std::string a_host = "127.0.0.1", b_host = "127.0.0.1";
  std::vector<std::string> a_prefix, b_prefix;
};

// An active/passive pair of `viaduct serve` for service `name` on ports base..base+3 (A's and
// B's listeners, then their lookup responders), each lookup responder on its own host. Both share
// the scratch cluster key; `extra_args` go to both (e.g. --set NAME=VALUE, before `serve`).
struct ServePair {
  std::string a_uri, b_uri;
  std::string a_lookup, b_lookup;
  std::unique_ptr<ChildProcess> a, b;
  ServePair(const std::string& tool, const PairLayout& layout, const std::string& name, int base,
            const std::vector<std::string>& extra_args = {});
  // Both printed their `serving` line within 5 s.
  bool started();
  [[nodiscard]] failover::SessionOptions session_options(const std::string& name) const;
};

}  // namespace viaduct::bench
