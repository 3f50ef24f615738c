// The cache cluster's client (cluster::CacheClient; `viaduct cache get|put|del`): routes each
// request to the owner of its type, as the master's map says, and keeps the application free of
// errors while servers die and come back.
//
// Failover mode, per server X:
//   - a request to X that fails (connection lost or refused, no answer within
//     cache_client_attempt_timeout_ms) is retried on a fresh connection, cache_client_retries
//     times; then the client enters failover mode for X: it reports X to the master and sends
//     X's requests to X's failover server (the next online member of its group), which forwards
//     or serves them (cluster/cache/cache_server.hpp);
//   - for cache_failover_window_ms it goes there directly; then it pings X: if X answers and the
//     map says X is online, the client leaves failover mode; if X answers and the map still says
//     offline, it tells the master X is back and stays; if X does not answer, it stays another
//     window.
// The client follows the map: the master pushes every change to the clients that watch it (this
// one does), and any kNotServing answer makes it fetch the map again. A map counts only with the
// master's signature; a server counts only once it proved, with the key the map gives for it,
// that it is that server. The application sees an error only for its own bad input (unknown
// type, oversized value) or when no server could serve for call_deadline_ms.
//
// Writes carry (client id, seq): one retried after a lost answer is not applied twice.
//
// Connects run on a helper thread per server (failover::BackgroundConnector), for up to
// cache_connect_timeout_ms. An attempt waits for its connect only as long as for an
// answer; a connect still running then counts as a failed attempt but goes on, and a later
// attempt takes its channel. Why: where a connect costs more than an attempt's timeout (rdma_cm's
// address and route resolution on a slow or busy host: 70-140 ms in the Soft-RoCE guest), a
// connect started afresh by every attempt never finished, and the client went round its servers
// in failover mode without serving anything.
//
// Threading: one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cluster/cache/cache_protocol.hpp"
#include "cluster/cache/cluster_map.hpp"
#include "cluster/cache/control_protocol.hpp"
#include "cluster/member_auth.hpp"
#include "failover/udp_socket.hpp"
#include "transport/channel.hpp"
#include "transport/tunable.hpp"

namespace viaduct::cluster::cache {

namespace tunables {
extern Tunable cache_client_retries;
extern Tunable cache_failover_window_ms;
extern Tunable cache_client_attempt_timeout_ms;
extern Tunable cache_connect_timeout_ms;
extern Tunable cache_client_deadline_ms;
}  // namespace tunables

struct CacheClientOptions {
  std::string master_control;  // the master's UDP HOST:PORT
  std::string master_id;
  failover::PublicKey master_key{};  // `viaduct key public --name m:MASTER`, or from the config
  ClusterKey client_key = ClusterKey::from_bytes(std::array<std::byte, kClusterKeyBytes>{});
  std::string name = "client";  // for the master's logs
};

struct CacheRecord {
  bool found = false;
  std::uint64_t version = 0;
  std::vector<std::byte> value;
};

struct WriteOutcome {
  bool applied = false;
  std::uint64_t version = 0;  // the new version, or the current one when not applied
};

struct CacheClientStats {
  std::uint64_t calls = 0;
  std::uint64_t attempts_failed = 0;
  std::uint64_t failover_entered = 0;
  std::uint64_t failover_left = 0;
  std::uint64_t not_serving = 0;
  std::uint64_t map_fetches = 0;
  std::uint64_t reports = 0;
};

class CacheClient {
 public:
  // Fetches the map (waiting up to the call deadline for the master).
  static Result<std::unique_ptr<CacheClient>> open(const CacheClientOptions& options);
  ~CacheClient();
  CacheClient(const CacheClient&) = delete;
  CacheClient& operator=(const CacheClient&) = delete;

  Result<CacheRecord> get(std::string_view type, std::span<const std::byte> key);
  Result<std::uint64_t> put(std::string_view type, std::span<const std::byte> key,
                            std::span<const std::byte> value);
  Result<WriteOutcome> put_if_version(std::string_view type, std::span<const std::byte> key,
                                      std::span<const std::byte> value, std::uint64_t expected);
  Result<std::uint64_t> remove(std::string_view type, std::span<const std::byte> key);

  [[nodiscard]] const ClusterMap& map() const { return map_; }
  [[nodiscard]] bool in_failover_mode(std::string_view server) const;
  [[nodiscard]] const CacheClientStats& stats() const { return stats_; }
  // "failover-enter s2", "failover-leave s2", "report s2", "map 7": for logs and the demo.
  std::function<void(std::string_view what, std::string_view server)> on_event;

 private:
  struct Conn;
  struct Outcome {
    Status transport;
    CacheStatus status = CacheStatus::kOk;
    std::uint64_t version = 0;
    std::span<const std::byte> value;
  };
  CacheClient() = default;
  Result<Outcome> call(CacheRequest request);
  Outcome attempt(std::uint32_t server, std::span<const std::byte> request, int timeout_ms);
  Conn* connect(std::uint32_t server, int timeout_ms);
  std::optional<std::uint32_t> route(const MapServer& owner, std::int64_t now);
  void fail_attempt(std::uint32_t server, std::uint32_t owner, std::int64_t now);
  Status fetch_map(int timeout_ms);
  void poll_notices();
  void take(const ControlMessage& m);
  void report(std::uint32_t server, bool back);
  void emit(std::string_view what, std::uint32_t server);

  CacheClientOptions options_;
  ClusterMap map_;
  failover::UdpSocket socket_;
  failover::UdpEndpoint master_;
  std::vector<std::unique_ptr<Conn>> conns_;  // by map index
  std::uint64_t client_id_ = 0;
  std::uint64_t seq_ = 0;
  bool map_stale_ = false;
  std::int64_t last_watch_ns_ = 0;
  std::vector<std::byte> request_buf_;
  std::vector<std::byte> answer_buf_;
  std::vector<std::byte> datagram_;
  CacheClientStats stats_;
};

}  // namespace viaduct::cluster::cache

namespace viaduct::cluster {
using Client = cache::CacheClient;
}
