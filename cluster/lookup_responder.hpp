// The UDP lookup responder (MC-SQLR server side): answers "who serves NAME?" for the names this
// server is currently *active* for, and stays silent otherwise — on unknown names, on malformed,
// empty or oversized packets, and beyond its budgets (per source and in all; see
// lookup_rate_limiter.hpp: the _EX answers are an amplification vector).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "cluster/lookup_rate_limiter.hpp"
#include "failover/ssrp.hpp"
#include "failover/udp_socket.hpp"
#include "transport/tunable.hpp"

namespace viaduct::cluster {

namespace tunables {
extern Tunable lookup_max_datagrams_per_round;
}  // namespace tunables

struct LookupResponderStats {
  std::atomic<std::uint64_t> answered{0};
  std::atomic<std::uint64_t> answer_bytes{0};
  std::atomic<std::uint64_t> malformed{0};  // also empty and oversized datagrams
  std::atomic<std::uint64_t> unknown_name{0};
  std::atomic<std::uint64_t> rate_limited{0};      // a source over its request rate or byte budget
  std::atomic<std::uint64_t> budget_exhausted{0};  // the global answers/s or bytes/s was spent
};

class LookupResponder {
 public:
  // Binds UDP host:port (port 0: any free port).
  static Result<std::unique_ptr<LookupResponder>> bind(const std::string& host, std::uint16_t port);

  [[nodiscard]] failover::UdpEndpoint address() const { return socket_.local(); }
  // From now on answer for record.instance_name with this record (this server is its active).
  void set_active(const failover::ssrp::InstanceRecord& record);
  // Stop answering for the name (stepped down, or shutting down).
  void set_inactive(const std::string& name);

  // Reads and handles the datagrams waiting now, at most lookup_max_datagrams_per_round of them, so
  // that a flood never holds the calling (serving) thread for long; the rest wait for the next
  // call. Returns how many it read: 0 means none was waiting. Call from one thread at a time;
  // thread-safe against set_active/set_inactive.
  std::size_t handle_pending();
  // Serves until `stop` is set (wakes every 50 ms to check it).
  void run(const std::atomic<bool>& stop);
  [[nodiscard]] const LookupResponderStats& stats() const { return stats_; }

 private:
  explicit LookupResponder(std::uint64_t seed) : limiter_(seed) {}
  void handle(std::span<const std::byte> packet, const failover::UdpEndpoint& from,
              const LookupLimits& limits, std::int64_t now_ns);

  failover::UdpSocket socket_;
  std::mutex mutex_;
  std::map<std::string, failover::ssrp::InstanceRecord> active_;  // key: lower-case name
  LookupRateLimiter limiter_;                                     // used by the serving thread only
  LookupResponderStats stats_;
};

}  // namespace viaduct::cluster
