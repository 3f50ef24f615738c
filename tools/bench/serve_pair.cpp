#include "tools/bench/serve_pair.hpp"

#include "tools/bench/scratch_key.hpp"

namespace viaduct::bench {

ServePair::ServePair(const std::string& tool, const PairLayout& l, const std::string& name,
                     int base, const std::vector<std::string>& extra_args) {
  a_uri = l.scheme + "://" + l.a_host + ":" + std::to_string(base);
  b_uri = l.scheme + "://" + l.b_host + ":" + std::to_string(base + 1);
  a_lookup = l.a_host + ":" + std::to_string(base + 2);
  b_lookup = l.b_host + ":" + std::to_string(base + 3);
  auto argv = [&](const std::vector<std::string>& prefix, const std::string& role,
                  const std::string& listen, const std::string& partner,
                  const std::string& lookup) {
    std::vector<std::string> all = prefix;
    all.push_back(tool);
    all.insert(all.end(), extra_args.begin(), extra_args.end());
    all.insert(all.end(), {"serve", "--name", name, "--role", role, "--listen", listen, "--partner",
                           partner, "--lookup", lookup, "--cluster-key", scratch_key_file()});
    return all;
  };
  a = std::make_unique<ChildProcess>(argv(l.a_prefix, "active", a_uri, b_uri, a_lookup));
  b = std::make_unique<ChildProcess>(argv(l.b_prefix, "passive", b_uri, a_uri, b_lookup));
}

bool ServePair::started() {
  return a->wait_for("serving", 5000) && b->wait_for("serving", 5000);
}

failover::SessionOptions ServePair::session_options(const std::string& name) const {
  return {name,
          {failover::UdpEndpoint::parse(a_lookup).value(),
           failover::UdpEndpoint::parse(b_lookup).value()},
          16,
          scratch_key().service_public_key(name)};
}

}  // namespace viaduct::bench
