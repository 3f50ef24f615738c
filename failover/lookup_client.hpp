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
extern Tunable lookup_retry_interval_us;
}  // namespace tunables

struct LookupAnswer {
  ssrp::InstanceRecord record;
  UdpEndpoint responder;  // who answered (may differ from who was asked, in a cluster)
  double elapsed_ms = 0;
};

// One lookup socket, used without blocking: the session probes with it while it suspects a hang,
// and lookup() below is built on it. Answers are matched to the name asked (case-insensitive, as
// FreeTDS compares); anything else that arrives (garbage, other names, spoofs) is dropped.
class LookupProbe {
 public:
  static Result<LookupProbe> open(std::span<const UdpEndpoint> responders);
  // CLNT_UCAST_INST(name) to every responder at once.
  void send(std::string_view name);
  // The first answer for `name` among the datagrams already waiting; nullopt when none is.
  std::optional<LookupAnswer> receive(std::string_view name);
  [[nodiscard]] int fd() const { return socket_.fd(); }

 private:
  UdpSocket socket_;
  std::vector<UdpEndpoint> responders_;
  std::int64_t sent_ns_ = 0;  // first send, for LookupAnswer::elapsed_ms
};

// Asks every responder at once and returns the first answer naming `name`. Re-sends every
// lookup_retry_interval_us for the first 50 ms (UDP may drop; during a failover the passive is
// usually a moment from taking over, and each re-send waiting costs the application), then at
// doubling intervals up to 50 ms so a cluster nobody answers for is not flooded. kTimeout with a
// clear message when nobody answers by the deadline.
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
