// Name lookup over UDP (MC-SQLR): ask every configured responder at once who serves a name, take
// the first valid answer, and cache it. The cache is purged before a new answer goes in, and an
// answer is only a hint until the connection's handshake verifies the name and epoch.
//
// Answers are accepted only from an endpoint that was asked (same address and port) and only for
// the name asked; everything else (another source or port, another name, garbage, empty
// datagrams) is counted and dropped. Unlike FreeTDS, which takes a reply from any host, viaduct
// knows its responders: a reply from elsewhere is at best useless and at worst a forgery racing
// the real one. A forger that can spoof a configured responder's address and port is not stopped
// here; the handshake's name and epoch check is what stops it. A responder must therefore answer
// from the address it is asked on: bind it to that address, not to a wildcard, on a host with
// several addresses.
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
  UdpEndpoint responder;  // who answered: always one of the endpoints asked
  double elapsed_ms = 0;
};

// What a lookup socket received and dropped.
struct LookupClientStats {
  std::uint64_t accepted = 0;
  std::uint64_t wrong_source = 0;  // not from an endpoint asked (address and port)
  std::uint64_t wrong_name = 0;    // a valid answer, but for other names only
  std::uint64_t malformed = 0;     // empty, truncated or not a valid SVR_RESP
  LookupClientStats& operator+=(const LookupClientStats& o);
};

// One lookup socket, used without blocking: the session probes with it while it suspects a hang,
// and lookup() below is built on it. Answers are matched to the responder and the name asked
// (case-insensitive, as FreeTDS compares); anything else that arrives is counted and dropped.
class LookupProbe {
 public:
  static Result<LookupProbe> open(std::span<const UdpEndpoint> responders);
  // CLNT_UCAST_INST(name) to every responder at once.
  void send(std::string_view name);
  // The first answer for `name` among the datagrams already waiting; nullopt when none is. Reads
  // at most kMaxDatagramsPerReceive datagrams per call, so that a flood aimed at this socket
  // cannot hold the caller (the session polls with it); the rest are read by the next call.
  std::optional<LookupAnswer> receive(std::string_view name);
  [[nodiscard]] int fd() const { return socket_.fd(); }
  [[nodiscard]] UdpEndpoint local() const { return socket_.local(); }
  [[nodiscard]] const LookupClientStats& stats() const { return stats_; }

  static constexpr int kMaxDatagramsPerReceive = 64;

 private:
  [[nodiscard]] bool asked(const UdpEndpoint& from) const;

  UdpSocket socket_;
  std::vector<UdpEndpoint> responders_;
  LookupClientStats stats_;
  std::int64_t sent_ns_ = 0;  // first send, for LookupAnswer::elapsed_ms
};

// Asks every responder at once and returns the first answer naming `name`. Re-sends every
// lookup_retry_interval_us for the first 50 ms (UDP may drop; during a failover the passive is
// usually a moment from taking over, and each re-send waiting costs the application), then at
// doubling intervals up to 50 ms so a cluster nobody answers for is not flooded. kTimeout with a
// clear message when nobody answers by the deadline. `stats`, if given, gets what was received and
// dropped added to it.
Result<LookupAnswer> lookup(std::string_view name, std::span<const UdpEndpoint> responders,
                            int timeout_ms = 0 /* 0: tunable */,
                            LookupClientStats* stats = nullptr);

// Lists every instance the responders serve (CLNT_UCAST_EX), waiting the whole timeout. Only
// answers from the endpoints asked count.
Result<std::vector<LookupAnswer>> list_instances(std::span<const UdpEndpoint> responders,
                                                 int timeout_ms,
                                                 LookupClientStats* stats = nullptr);

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
