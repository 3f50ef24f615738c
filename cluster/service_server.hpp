// One server instance of a named service: serves clients while active, watches its partner, takes
// over when the active partner falls silent, steps down when it learns of a newer epoch, and
// answers name lookups (MC-SQLR over UDP) only while active.
//
// Trust: the partners prove to each other that they hold the cluster secret
// (cluster/member_auth.hpp) on every connection and in every ping; clients can ask the active to
// prove, with the service's key, that it serves the name (failover/server_proof.hpp). Nothing a
// client sends changes the role or the epoch.
//
// Threads: the serving loop (run / run_once) owns the listener, every accepted channel, the
// lookup responder and the role. The partner link (cluster/partner_link.hpp) pings the partner on
// a real-time thread of its own; the replication stream (cluster/replica_stream.hpp) connects on a
// connector thread (a connect to a frozen partner blocks, and that must never stall serving).
//
// Role changes happen only between rounds: a callback that learns of a newer epoch (an ack on the
// replica stream, a replica frame from the partner) records it, and run_once applies it once no
// poll() is on the stack, so no callback ever destroys what called it.
//
// Never lose what was acknowledged: the active answers a request only once its in-sync passive
// applied it, or once that passive can no longer take over; a passive takes over only while in
// sync (cluster/takeover_policy.hpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include <viaduct/service.hpp>

#include "cluster/admission.hpp"
#include "cluster/lookup_responder.hpp"
#include "cluster/member_auth.hpp"
#include "cluster/partner_link.hpp"
#include "cluster/partner_protocol.hpp"
#include "cluster/replica_stream.hpp"
#include "cluster/reply_cache.hpp"
#include "cluster/service_role.hpp"
#include "cluster/takeover_policy.hpp"
#include "transport/channel_server.hpp"
#include "transport/tunable.hpp"

namespace viaduct::cluster {

namespace tunables {
extern Tunable partner_ping_interval_ms;
extern Tunable partner_takeover_after_ms;
extern Tunable partner_startup_grace_ms;
extern Tunable partner_realtime_priority;
extern Tunable partner_unclean_takeover;
}  // namespace tunables

// kAppStatusNotActive, kAppStatusBadRequest, kAppStatusStaleEpoch: failover/service_hello.hpp.

// The application's side: <viaduct/service.hpp>.
using ServiceHandler = viaduct::Service;

namespace tunables {
extern Tunable reply_cache_per_client;
extern Tunable partner_replication;
}  // namespace tunables

struct ServiceConfig {
  std::string name;
  Role initial_role = Role::kPassive;
  // The epoch an active starts at (a passive starts knowing it). 1 for a fresh pair. After both
  // partners were lost, a server started above the last epoch clients saw (the "took-over NAME
  // epoch N" lines, `viaduct lookup`) is followed by their sessions, which refuse any lower
  // epoch as a possibly deposed active.
  std::uint64_t initial_epoch = 1;
  std::string listen_uri;   // transport address clients and the partner connect to
  std::string partner_uri;  // the partner's listen address; empty: no partner
  std::string lookup_host = "127.0.0.1";
  std::uint16_t lookup_port = 0;  // 0: any free port
  bool lookup_enabled = true;
  // The cluster secret: required with a partner (members authenticate each other), and to prove
  // the service's identity to clients. Not owned; must outlive the server.
  const ClusterKey* cluster_key = nullptr;
};

struct ServiceStats {
  std::uint64_t member_auth_failures = 0;  // connections claiming to be the partner, refused
  std::uint64_t proofs = 0;                // identity proofs signed for clients
  std::uint64_t takeovers_refused = 0;     // the partner was gone but we were out of sync
  std::uint64_t resyncs = 0;               // replication (re)started with a snapshot
};

class ServiceServer {
 public:
  static Result<std::unique_ptr<ServiceServer>> start(const ServiceConfig& config,
                                                      ServiceHandler* app);
  ~ServiceServer();

  void run(const std::atomic<bool>& stop);
  // One round. An active busy-polls (timeout 0); a passive may block up to timeout_ms (its
  // partner's pings, a connection, or the monitor's news of a dead partner end the wait).
  std::size_t run_once(int passive_timeout_ms = 0);
  [[nodiscard]] RoleState role() const { return role_; }
  [[nodiscard]] const transport::Address& address() const { return server_->address(); }
  [[nodiscard]] const LookupResponder* responder() const { return responder_.get(); }
  [[nodiscard]] bool replicating() const { return replica_.open(); }
  [[nodiscard]] std::uint64_t replicated() const { return replica_.replicated(); }
  [[nodiscard]] const ServiceStats& stats() const { return stats_; }
  [[nodiscard]] const PartnerLink* partner_link() const { return link_.get(); }
  // A passive holds everything the active acknowledged (always true for an active).
  [[nodiscard]] bool in_sync() const;
  // Operator's decision (any thread): take over even though out of sync, accepting the loss of
  // what the active may have acknowledged alone (as Kafka's unclean leader election).
  void promote() { promote_.store(true, std::memory_order_release); }
  // Why this instance last took over ("partner-refused", "partner-silent-ms N").
  [[nodiscard]] const std::string& takeover_reason() const { return takeover_reason_; }
  // Role changes, for logs and tools (called on the serving thread).
  std::function<void(RoleEvent, const RoleState&)> on_role_change;
  // Replication to the partner started (true) or stopped (false), for logs and tools.
  std::function<void(bool)> on_replication;
  // Other events an operator wants to see, one line each ("serving-alone ORDERS partner-gone",
  // "takeover-refused ORDERS out-of-sync"), called on the serving thread.
  std::function<void(const std::string&)> on_notice;

 private:
  class Dispatcher;
  ServiceServer() = default;
  void apply(RoleEvent event);
  void check_role();
  void wake();  // any thread: a blocked passive loop should look at the link now
  void on_member_request(transport::Channel& channel, const transport::IncomingRequest& request);
  void notice(const std::string& text);
  void announce();
  // Replication (serving thread).
  void answer_or_hold(transport::Channel& channel, std::uint64_t request_id,
                      std::uint64_t client_id, std::uint64_t seq,
                      std::span<const std::byte> request, std::uint32_t status);
  void apply_replica_from_partner(transport::Channel& channel, std::uint64_t request_id,
                                  std::span<const std::byte> payload);
  void tend_replica(std::int64_t now);
  void drop_replica(AloneVerdict why);
  void expire_half_open_members(std::int64_t now);
  [[nodiscard]] failover::ssrp::InstanceRecord lookup_record() const;
  bool admit(std::span<const std::byte> hello_app, std::vector<std::byte>* reason);

  ServiceConfig config_;
  ServiceHandler* app_ = nullptr;
  ReplyCache replies_;
  // The client id each client connection uses, fixed by its first request: exactly-once is keyed
  // by it, so a connection cannot speak for (or evict) other clients by changing it.
  ClientBindings client_ids_;
  ServiceStats stats_;
  std::unique_ptr<PartnerLink> link_;
  ReplicaStream replica_;            // to the passive partner, while active
  std::uint64_t pending_epoch_ = 0;  // a member named a newer epoch this round: applied after it
  MemberTable members_;              // connections claiming to be the partner, and their handshakes
  std::vector<const transport::Channel*> doomed_;  // to close after this round
  std::int64_t drop_requested_ns_ = 0;             // asked the passive to count itself out of sync
  bool may_be_replaced_ = false;        // paused with an in-sync passive; not heard since
  std::int64_t pause_seen_ns_ = 0;      // the last own pause acted upon
  std::uint64_t host_stalls_seen_ = 0;  // the link's host stalls already told the operator
  std::atomic<bool> promote_{false};
  TakeoverVerdict last_verdict_ = TakeoverVerdict::kStay;
  std::vector<std::byte> response_;  // reused: no allocation per request once warm
  RoleState role_;
  std::unique_ptr<transport::Domain> domain_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<transport::ChannelServer> server_;
  std::unique_ptr<LookupResponder> responder_;
  bool yield_on_tie_ = false;
  std::int64_t started_ns_ = 0;
  std::uint64_t rounds_ = 0;

  std::int64_t last_round_ns_ = 0;
  std::int64_t resumed_ns_ = 0;         // when this loop last found it had not run for a while
  std::int64_t passive_since_ns_ = 0;   // when this instance last stepped down
  std::int64_t long_pause_end_ns_ = 0;  // when this loop last resumed from a long pause
  std::string takeover_reason_;         // why it last took over, for the operator

  // Written by the partner link when it learns something, so a blocked passive loop acts at once.
  int wake_fd_ = -1;
};

}  // namespace viaduct::cluster
