// Name lookup over UDP (MC-SQLR): ask every configured responder at once who serves a name, take
// the first valid answer, and cache it. The cache is purged before a new answer goes in, and an
// answer is only a hint until the connection's handshake verifies the name and epoch.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "failover/ssrp.hpp"
#include "failover/udp_socket.hpp"
#include "transport/tunable.hpp"

namespace viaduct::failover {

namespace tunables {
extern Tunable lookup_timeout_ms;
extern Tunable lookup_retry_interval_ms;
}  // namespace tunables

struct LookupAnswer {
  ssrp::InstanceRecord record;
  UdpEndpoint responder;  // who answered (may differ from who was asked, in a cluster)
  double elapsed_ms = 0;
};

// Sends CLNT_UCAST_INST(name) to every responder, re-sending after lookup_retry_interval_ms and
// then at doubling intervals up to 50 ms (UDP may drop; a takeover may be a moment away), and returns the first answer naming `name` (case-insensitive, as FreeTDS
// compares). kTimeout with a clear message when nobody answers by the deadline.
Result<LookupAnswer> lookup(std::string_view name, std::span<const UdpEndpoint> responders,
                            int timeout_ms = 0 /* 0: tunable */);

// Lists every instance the responders serve (CLNT_UCAST_EX), waiting the whole timeout.
Result<std::vector<LookupAnswer>> list_instances(std::span<const UdpEndpoint> responders,
                                                 int timeout_ms);

class LookupCache {
 public:
  [[nodiscard]] std::optional<ssrp::InstanceRecord> get(const std::string& name) const;
  // Purges the old entry for the name, then stores the new one.
  void put(const ssrp::InstanceRecord& record);
  void purge(const std::string& name);
  [[nodiscard]] std::size_t size() const { return entries_.size(); }

 private:
  std::map<std::string, ssrp::InstanceRecord> entries_;  // key: lower-case name
};

}  // namespace viaduct::failover
