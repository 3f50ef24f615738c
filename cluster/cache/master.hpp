// The cache cluster's master (`viaduct master`): the author of the cluster map. It takes "X seems
// offline" reports from data servers and clients, verifies each by probing X itself, marks X
// offline only if that fails, tells X's group and the clients that follow the map, re-checks
// offline servers with backoff and jitter, and brings them back through the "returning" barrier.
//
// Verdicts:
//   - refused: X's control port answers "port unreachable" (ECONNREFUSED on the master's
//     connected probe socket): X's process is gone. Offline at once — a dead process serves
//     nothing stale.
//   - silent: no probe answered within cache_verify_ms (frozen, or cut off from the master).
//     Offline only once the lease the master last granted X has run out: until then X may still
//     serve from its cache, and nobody else may serve its types.
//   A burst of reports about one server is one verification; reports about a server being
//   verified, or verified alive in the last cache_verified_quiet_ms, only count.
// Cascade guard: no verdict takes more than cache_max_offline_percent of a group offline at once;
// further verdicts wait (logged) and are verified again later.
// Back online: a probe answered (a periodic re-check, or a client's "X seems back" report) makes
// X "returning"; every other member of the group then drops what it cached of X's types and
// stops serving them, and acknowledges that map; once all have (or their lease ran out), X is
// online again.
//
// Trust: reports count only with the members' MAC or the clients' (cluster/cache/
// control_protocol.hpp); a report only ever triggers a verification, so a lying client can make
// the master probe, never mark a reachable server offline. Leases and acknowledgements come from
// members only. Every table a sender can grow is bounded (watchers, verifications).
//
// Threading: one thread (run / run_once) owns everything.
#pragma once

#include <poll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluster/cache/cluster_map.hpp"
#include "cluster/cache/control_protocol.hpp"
#include "cluster/lookup_rate_limiter.hpp"
#include "cluster/member_auth.hpp"
#include "failover/udp_socket.hpp"
#include "transport/tunable.hpp"

namespace viaduct::cluster::cache {

namespace tunables {
extern Tunable cache_verify_ms;
extern Tunable cache_verify_probe_interval_ms;
extern Tunable cache_recheck_min_ms;
extern Tunable cache_recheck_max_ms;
extern Tunable cache_max_offline_percent;
extern Tunable cache_notice_retry_ms;
extern Tunable cache_client_requests_per_s;
extern Tunable cache_client_answer_bytes_per_s;
extern Tunable cache_client_global_answers_per_s;
extern Tunable cache_client_global_answer_bytes_per_s;
}  // namespace tunables

struct MasterConfig {
  std::string id;
  std::string control;                      // UDP HOST:PORT the master listens on
  ClusterMap map;                           // the configured cluster (every server starts online)
  const ClusterKey* cluster_key = nullptr;  // not owned
};

// One line per event, for the operator and the demo's timeline.
struct MasterEvent {
  std::int64_t at_ns = 0;
  std::string what;  // "report", "verdict-offline", "notified", "online", ...
  std::string server;
  std::string detail;
};

struct MasterStats {
  std::uint64_t reports = 0;
  std::uint64_t reports_refused = 0;  // bad MAC, unknown subject, malformed
  std::uint64_t verifications = 0;
  std::uint64_t verified_alive = 0;
  std::uint64_t marked_offline = 0;
  std::uint64_t marked_online = 0;
  std::uint64_t deferred_by_guard = 0;
  std::uint64_t leases = 0;
  std::uint64_t map_requests = 0;
  std::uint64_t client_rate_limited = 0;  // client datagrams dropped, answers not sent
};

class Master {
 public:
  static Result<std::unique_ptr<Master>> start(const MasterConfig& config);
  ~Master();
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  void run(const std::atomic<bool>& stop);
  // One round: reads what arrived (waiting up to timeout_ms), then runs due timers.
  void run_once(int timeout_ms);

  [[nodiscard]] const ClusterMap& map() const { return map_; }
  [[nodiscard]] const MasterStats& stats() const { return stats_; }
  [[nodiscard]] failover::PublicKey public_key() const;
  [[nodiscard]] std::string control_address() const;
  std::function<void(const MasterEvent&)> on_event;

 private:
  struct Tracked;
  struct Watcher {
    failover::UdpEndpoint at;
    std::int64_t until_ns = 0;
  };
  Master() = default;
  void receive(std::int64_t now);
  void on_message(const ControlMessage& m, bool from_client, const failover::UdpEndpoint& from,
                  std::int64_t now);
  void start_verification(std::uint32_t index, std::int64_t now, const std::string& why);
  void tend(std::int64_t now);
  void probe(std::uint32_t index, std::int64_t now);
  void poll_probe_sockets(std::int64_t now);
  void verdict_offline(std::uint32_t index, std::int64_t now, const std::string& how);
  void mark_offline(std::uint32_t index, std::int64_t now);
  void alive(std::uint32_t index, std::int64_t now);
  void publish(std::int64_t now);
  void send(const ControlMessage& m, const failover::UdpEndpoint& to, bool to_client);
  void event(std::int64_t now, std::string what, std::uint32_t index, std::string detail);
  [[nodiscard]] bool guard_allows(std::uint32_t index) const;

  MasterConfig config_;
  ClusterKey client_key_ = ClusterKey::from_bytes(std::array<std::byte, kClusterKeyBytes>{});
  ClusterMap map_;
  std::vector<std::byte> signed_map_;
  failover::UdpSocket socket_;
  std::vector<Tracked> tracked_;  // by map index
  std::vector<Watcher> watchers_;
  std::vector<std::byte> datagram_;
  std::mt19937_64 jitter_{std::random_device{}()};
  std::int64_t quiet_until_ns_ = 0;
  std::vector<pollfd> poll_fds_;  // the socket, then one probe socket per server  // just started:
                                  // no lease, no verdict before this
  // Clients' datagrams and the answers to them, per source and in all (the lookup responder's
  // token buckets: cluster/lookup_rate_limiter.hpp).
  LookupRateLimiter client_limiter_{std::random_device{}()};
  LookupLimits client_limits_;
  MasterStats stats_;
};

}  // namespace viaduct::cluster::cache
