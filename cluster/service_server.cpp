#include "cluster/service_server.hpp"
#include "cluster/service_dispatch.hpp"
#include "transport/clock.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>

#include "failover/request_header.hpp"
#include "transport/log.hpp"
#include "transport/polite_spin.hpp"
#include "transport/tunables.hpp"

namespace viaduct::cluster {

namespace {
// The part of the reply cache sent with a snapshot (the most recently active clients first): it
// must fit one replica message (the channel's rendezvous limit is 64 MiB), state included.
constexpr std::size_t kSnapshotReplyCacheBytes = 16u << 20;
// How many takeover deadlines an answer may wait for a passive that is alive and in sync.
constexpr std::int64_t kHeldPatienceDeadlines = 8;
}  // namespace

namespace tunables {
Tunable partner_ping_interval_ms("cluster", "partner_ping_interval_ms", 5, 1, 60000,
                                 "how often partners ping each other (role and epoch)");
Tunable partner_takeover_after_ms(
    "cluster", "partner_takeover_after_ms", 30, 10, 600000,
    "a passive takes over after hearing nothing from its active partner for this long");
// Partners rarely start at the same instant: before a passive has ever heard its partner, it
// waits this long (not partner_takeover_after_ms) before concluding the active is not there.
Tunable partner_replication(
    "cluster", "partner_replication", 1, 0, 1,
    "1: the active answers a request only once its passive partner has applied it, so a request "
    "is executed once even across a crash; 0: answer at once");
Tunable partner_startup_grace_ms(
    "cluster", "partner_startup_grace_ms", 2000, 0, 600000,
    "a passive that never heard its partner waits this long before it counts it gone (it takes "
    "over then only with partner_unclean_takeover: it holds none of the active's state)");
Tunable partner_realtime_priority(
    "cluster", "partner_realtime_priority", 10, 0, 99,
    "SCHED_FIFO priority of the partner link thread (0: normal scheduling), so that a busy host "
    "never delays a ping past the takeover deadline");
Tunable partner_unclean_takeover(
    "cluster", "partner_unclean_takeover", 0, 0, 1,
    "1: a passive that is out of sync may still take over when its partner is gone, losing what "
    "the active acknowledged alone (Kafka's unclean leader election); 0: it refuses to serve");
}  // namespace tunables

Result<std::unique_ptr<ServiceServer>> ServiceServer::start(const ServiceConfig& config,
                                                            ServiceHandler* app) {
  if (config.name.empty() || config.name.size() > kMaxServiceNameBytes) {
    return Status(Code::kInvalidArgument, "service name must be 1..31 bytes");
  }
  auto listen = transport::Address::parse(config.listen_uri);
  if (!listen) return listen.status();
  std::optional<transport::Address> partner;
  if (!config.partner_uri.empty()) {
    auto p = transport::Address::parse(config.partner_uri);
    if (!p) return p.status();
    partner = p.value();
    if (config.cluster_key == nullptr) {
      return Status(Code::kInvalidArgument,
                    "a server with a partner needs the cluster key (members authenticate each "
                    "other): make one with `viaduct keygen FILE`, give it with --cluster-key");
    }
  }
  if (config.initial_epoch == 0) {
    return Status(Code::kInvalidArgument, "the initial epoch must be 1 or more");
  }
  std::unique_ptr<ServiceServer> s(new ServiceServer());  // private constructor
  s->config_ = config;
  s->app_ = app;
  // The initial epoch (1 unless configured) belongs to the configured active. A passive starts
  // knowing it, so a takeover claims one more and can never tie with the active it replaces.
  s->role_ = {config.initial_role, config.initial_epoch};
  s->yield_on_tie_ = config.listen_uri > config.partner_uri;
  auto domain = transport::Domain::open(listen.value());
  if (!domain) return domain.status();
  s->domain_ = std::move(domain.value());
  s->dispatcher_ = std::make_unique<Dispatcher>(s.get());
  transport::ChannelServerOptions options;
  // A passive leaves the CPU to the active and its clients (often on the same machine) until it
  // takes over; then it busy-polls like any active.
  options.busy_poll = config.initial_role == Role::kActive;
  options.admit = [raw = s.get()](std::span<const std::byte> app_bytes,
                                  std::vector<std::byte>* reason) {
    return raw->admit(app_bytes, reason);
  };
  options.before_destroy = [raw = s.get()](const transport::Channel& gone) {
    raw->replica_.forget(gone);
    // The end of the replication stream does not by itself make us out of sync: it also ends
    // when the active dies, which is when we are needed. The active acknowledges nothing alone
    // until we count ourselves out of sync, are gone, or were unreachable for four takeover
    // deadlines (cluster/takeover_policy.hpp); the partner link clears our sync state then.
    // A member connection broke: the partner may have died. Ask now rather than at the next ping.
    if (raw->members_.forget(gone) && raw->link_) raw->link_->ping_now();
    raw->client_ids_.forget(gone);
  };
  options.reply_hello = [raw = s.get()] {
    return encode_hello_app(
        {raw->role_.role == Role::kActive ? HelloKind::kActive : HelloKind::kStandby,
         raw->role_.epoch, raw->config_.name});
  };
  auto server = transport::ChannelServer::listen(*s->domain_, listen.value(), s->dispatcher_.get(),
                                                 std::move(options));
  if (!server) return server.status();
  s->server_ = std::move(server.value());
  s->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd_ < 0) return Status(Code::kResource, "eventfd");
  s->server_->add_wake_fd(s->wake_fd_);
  if (config.lookup_enabled) {
    auto responder = LookupResponder::bind(config.lookup_host, config.lookup_port);
    if (!responder) return responder.status();
    s->responder_ = std::move(responder.value());
  }
  s->started_ns_ = steady_now_ns();
  if (partner) {
    s->replica_.start({config.name, config.partner_uri, config.cluster_key,
                       tunables::partner_ping_interval_ms.get()});
    // The link's UDP port has the number of the transport port, on the same host.
    auto local = failover::UdpEndpoint::from(listen.value().host, s->server_->address().port);
    auto remote = failover::UdpEndpoint::from(partner->host, partner->port);
    if (!local) return local.status();
    if (!remote) return remote.status();
    PartnerLinkConfig link;
    link.name = config.name;
    link.local = local.value();
    link.partner = remote.value();
    link.key = config.cluster_key;
    link.interval_ms = tunables::partner_ping_interval_ms.get();
    link.takeover_after_ms = tunables::partner_takeover_after_ms.get();
    link.realtime_priority = static_cast<int>(tunables::partner_realtime_priority.get());
    link.on_news = [raw = s.get()] { raw->wake(); };
    auto started = PartnerLink::start(std::move(link));
    if (!started) return started.status();
    s->link_ = std::move(started.value());
  }
  s->announce();
  if (s->role_.role == Role::kActive && s->responder_)
    s->responder_->set_active(s->lookup_record());
  return s;
}

ServiceServer::~ServiceServer() {
  link_.reset();  // joins the link thread, which may still call wake()
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

bool ServiceServer::in_sync() const {
  if (role_.role == Role::kActive || !link_) return true;
  return link_->in_sync_gen() != 0;
}

void ServiceServer::wake() {
  std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void ServiceServer::notice(const std::string& text) {
  VIADUCT_LOG(kInfo, text);
  if (on_notice) on_notice(text);
}

void ServiceServer::announce() {
  if (link_) {
    link_->announce(role_.role == Role::kActive, role_.epoch, drop_requested_ns_ != 0,
                    replica_.sync_gen());
  }
}

failover::ssrp::InstanceRecord ServiceServer::lookup_record() const {
  const auto& a = server_->address();
  failover::ssrp::InstanceRecord r;
  r.server_name = a.host;
  r.instance_name = config_.name;
  r.clustered = !config_.partner_uri.empty();
  r.epoch = role_.epoch;
  if (a.backend == transport::BackendKind::kOfiTcp) {
    r.tcp_port = a.port;
  } else {
    r.via_host = "viaduct";
    r.via_port = a.port;
  }
  return r;
}

bool ServiceServer::admit(std::span<const std::byte> hello_app, std::vector<std::byte>* reason) {
  return admit_hello(hello_app, {config_.name, role_.role, role_.epoch, link_ != nullptr}, reason);
}

void ServiceServer::on_member_request(transport::Channel& channel,
                                      const transport::IncomingRequest& request) {
  switch (
      members_.on_request(channel, request, *config_.cluster_key, config_.name, steady_now_ns())) {
    case MemberTable::Step::kHandshaking:
      return;
    case MemberTable::Step::kRefused:
      ++stats_.member_auth_failures;
      doomed_.push_back(&channel);
      return;
    case MemberTable::Step::kAuthenticated:
      break;
  }
  if (is_replica(request.payload)) {
    apply_replica_from_partner(channel, request.request_id, request.payload);
    return;
  }
  (void)channel.respond(request.request_id, {}, kAppStatusBadRequest);
}

void ServiceServer::apply(RoleEvent event) {
  if (event == RoleEvent::kNone) {
    announce();
    return;
  }
  if (event == RoleEvent::kSteppedDown) passive_since_ns_ = steady_now_ns();
  if (event == RoleEvent::kTookOver) {
    // The old active's stream is over; our own starts with the next replica connection.
    if (link_) link_->set_in_sync(0);
    drop_requested_ns_ = 0;
    may_be_replaced_ = false;
    server_->set_busy_poll(true);
    if (responder_) responder_->set_active(lookup_record());
  } else {
    // Stepped down: stop answering lookups and drop every client, so they look again.
    if (responder_) responder_->set_inactive(config_.name);
    server_->set_busy_poll(false);
    // Replaced: answers still waiting for the partner must never go out (the new active may
    // not have their effect). Their clients re-send to the new active.
    replica_.abandon();  // the channel itself is closed by tend_replica, outside its poll
    drop_requested_ns_ = 0;
    may_be_replaced_ = false;
    // Only marks them closed: they are destroyed between rounds (we may be inside one's poll).
    server_->close_if([](const transport::Channel& c) { return !is_partner_channel(c); });
  }
  announce();
  VIADUCT_LOG(kInfo, (event == RoleEvent::kTookOver ? "took-over " : "stepped-down ")
                         << config_.name << " epoch " << role_.epoch
                         << (event == RoleEvent::kTookOver ? " reason " + takeover_reason_ : ""));
  if (on_role_change) on_role_change(event, role_);
}

void ServiceServer::check_role() {
  if (!link_) return;
  // The clock first, then what the link heard: this thread may be preempted between the two
  // reads (a busy host), and the other order turns that preemption into the partner's silence.
  std::int64_t now = steady_now_ns();
  PartnerView v = link_->view();
  if (v.host_stalls != host_stalls_seen_) {
    host_stalls_seen_ = v.host_stalls;
    notice("host-stall " + config_.name + " " + std::to_string(v.last_host_stall_ns / 1'000'000) +
           " ms (a CPU of this host did not run while the partner was silent)");
  }
  if (v.pause_end_ns > pause_seen_ns_) {
    pause_seen_ns_ = v.pause_end_ns;
    // Paused while an in-sync passive watched: it may have taken over meanwhile. Until we hear
    // it again, nothing goes out that it may lack.
    if (role_.role == Role::kActive && replica_.partner_synced()) may_be_replaced_ = true;
  }
  if (v.heard_ns != 0) {
    apply(on_partner_heard(role_, v.active, v.epoch, yield_on_tie_));
    if (may_be_replaced_ && v.heard_ns > pause_seen_ns_) may_be_replaced_ = false;
  }
  if (role_.role != Role::kPassive) return;
  PassiveFacts f;
  f.now_ns = now;
  f.started_ns = started_ns_;
  f.heard_ns = v.heard_ns;
  f.checked_ns = v.checked_ns;
  f.partner_active = v.active;
  f.refused_ns = v.refused_ns;
  f.pause_end_ns = std::max(v.pause_end_ns, long_pause_end_ns_);
  f.host_stalled = v.host_stalled;
  f.passive_since_ns = passive_since_ns_;
  f.in_sync = link_->in_sync_gen() != 0;
  f.unclean_allowed =
      tunables::partner_unclean_takeover.get() != 0 || promote_.load(std::memory_order_acquire);
  f.takeover_after_ns = tunables::partner_takeover_after_ms.get() * 1'000'000;
  f.startup_grace_ns = tunables::partner_startup_grace_ms.get() * 1'000'000;
  TakeoverVerdict verdict = decide_takeover(f);
  if (verdict == TakeoverVerdict::kOutOfSync) {
    if (last_verdict_ != verdict) {
      ++stats_.takeovers_refused;
      notice("takeover-refused " + config_.name +
             " out-of-sync (may lack what the active acknowledged; promote to accept the loss)");
    }
    last_verdict_ = verdict;
    return;
  }
  last_verdict_ = verdict;
  if (verdict == TakeoverVerdict::kStay) return;
  std::int64_t last =
      std::max({v.heard_ns != 0 ? v.heard_ns : started_ns_, passive_since_ns_, f.pause_end_ns});
  takeover_reason_ =
      verdict == TakeoverVerdict::kPartnerCrashed
          ? "partner-refused"
          : "partner-silent-ms " + std::to_string((std::min(now, v.checked_ns) - last) / 1'000'000);
  if (!f.in_sync) takeover_reason_ += " unclean";
  promote_.store(false, std::memory_order_release);
  apply(on_partner_silent(role_));
}

std::size_t ServiceServer::run_once(int passive_timeout_ms) {
  bool passive = role_.role == Role::kPassive;
  if (!passive && replica_.partner_synced()) {
    // Our own pause, seen by this loop before it serves anything (the link thread may not have
    // run yet): with an in-sync passive, it may have taken over meanwhile.
    std::int64_t now = steady_now_ns();
    if (last_round_ns_ != 0 &&
        now - last_round_ns_ > tunables::partner_takeover_after_ms.get() * 500'000) {
      may_be_replaced_ = true;
      pause_seen_ns_ = std::max(pause_seen_ns_, now);
    }
    last_round_ns_ = now;
  }
  std::size_t handled = server_->run_once(passive ? passive_timeout_ms : 0);
  handled += replica_.poll();
  // Role changes the round's callbacks learned of, applied now that no poll() is on the stack.
  if (std::uint64_t newer = std::max(replica_.newer_epoch(), pending_epoch_); newer > role_.epoch) {
    apply(on_newer_epoch_seen(role_, newer));
  }
  replica_.clear_newer_epoch();
  pending_epoch_ = 0;
  if (!doomed_.empty()) {
    server_->close_if([this](const transport::Channel& c) {
      return std::find(doomed_.begin(), doomed_.end(), &c) != doomed_.end();
    });
    doomed_.clear();
  }
  if (passive) {
    std::uint64_t drained = 0;
    (void)!::read(wake_fd_, &drained, sizeof(drained));
  }
  // Lookups and role checks cost a syscall or a clock read: do them every 64 rounds (~µs apart).
  // A passive blocks between rounds, so it checks on every round.
  if ((++rounds_ & 63) == 0 || passive || may_be_replaced_) {
    std::int64_t now = steady_now_ns();
    // This loop did not run for a while (frozen, or starved): before giving up on the partner,
    // give it time to tell us whether it took over meanwhile.
    if (last_round_ns_ != 0 && now - last_round_ns_ > 5'000'000) resumed_ns_ = now;
    if (last_round_ns_ != 0 &&
        now - last_round_ns_ > tunables::partner_takeover_after_ms.get() * 500'000) {
      long_pause_end_ns_ = now;
    }
    // Whether a pause made us lose sync is the real-time link thread's call, not this loop's: a
    // serving loop merely starved for two deadlines (a busy host, the TCG guest) has missed
    // nothing the active acknowledged. The long pause above restarts the partner's silence, and
    // the link handles its own pause before any refusal it read meanwhile.
    last_round_ns_ = now;
    if (responder_) handled += responder_->handle_pending();
    check_role();
    tend_replica(now);
    expire_half_open_members(now);
  }
  return handled;
}

void ServiceServer::expire_half_open_members(std::int64_t now) {
  // A connection that claims to be the partner and does not prove it within a second is cut
  // off: it must not hold a slot (or our memory) for long.
  members_.expired(now, 1'000'000'000, doomed_);
}

void ServiceServer::answer_or_hold(transport::Channel& channel, std::uint64_t request_id,
                                   std::uint64_t client_id, std::uint64_t seq,
                                   std::span<const std::byte> request, std::uint32_t status) {
  if (!replica_.open() && !replica_.failed()) {
    (void)channel.respond(request_id, response_, status);  // no partner to wait for
    return;
  }
  replica_.replicate_and_hold(channel, request_id, role_.epoch, client_id, seq, request, status,
                              response_);
}

void ServiceServer::drop_replica(AloneVerdict why) {
  // The passive can no longer take over (cluster/takeover_policy.hpp): serve alone. Answers
  // waiting for it go out now.
  replica_.release_all();
  replica_.close();
  drop_requested_ns_ = 0;
  announce();
  notice("serving-alone " + config_.name + " " + std::string(alone_verdict_name(why)));
  VIADUCT_LOG(kInfo, "replication of " << config_.name << " stopped: serving alone");
  if (on_replication) on_replication(false);
}

void ServiceServer::tend_replica(std::int64_t now) {
  bool wanted = role_.role == Role::kActive && !config_.partner_uri.empty() &&
                tunables::partner_replication.get() != 0;
  if (role_.role != Role::kActive) {
    if (replica_.open()) {
      replica_.abandon();  // stepped down: never answer
      replica_.close();
    }
    return;
  }
  PartnerView v = link_ ? link_->view() : PartnerView{};
  bool stream_open = replica_.open() && !replica_.broken();
  if (replica_.open() || replica_.held() > 0) {
    std::int64_t deadline_ns = tunables::partner_takeover_after_ms.get() * 1'000'000;
    // How long an answer may wait for the passive's acknowledgement. While the passive's link
    // answers and says it is in sync with this stream, its process is alive and only its serving
    // thread is late (a busy host): waiting is safe and keeps it able to take over. Giving up
    // after one deadline made every 30 ms starvation of the passive cost its sync, so that a kill
    // of the active right after left no in-sync server (found under TSan and beside stress-ng).
    bool passive_alive_in_sync = v.heard_ns != 0 &&
                                 std::min(now, v.checked_ns) - v.heard_ns < deadline_ns &&
                                 v.in_sync && v.sync_gen == replica_.sync_gen();
    std::int64_t patience_ns =
        passive_alive_in_sync ? kHeldPatienceDeadlines * deadline_ns : deadline_ns;
    bool overdue =
        replica_.held() > 0 && now - std::max(replica_.oldest_held_ns(), resumed_ns_) > patience_ns;
    // The passive says it fell out of sync with our current stream (it was paused, or lost it).
    bool passive_lost_sync = replica_.partner_synced() && v.heard_ns > replica_.synced_at_ns() &&
                             (!v.in_sync || v.sync_gen < replica_.sync_gen());
    if (!stream_open || overdue || passive_lost_sync || !wanted) {
      if (drop_requested_ns_ == 0) {
        drop_requested_ns_ = now;
        announce();  // our pongs now ask the passive to count itself out of sync
        // The stream broke: if the passive's process is gone, its port-unreachable answer lets
        // us serve alone now instead of one ping interval later.
        if (!stream_open && link_) link_->ping_now();
      }
      ActiveFacts f;
      f.now_ns = now;
      f.heard_ns = v.heard_ns;
      f.checked_ns = v.checked_ns;
      f.partner_in_sync = v.in_sync;
      f.partner_sync_gen = v.sync_gen;
      f.sync_gen = replica_.sync_gen();
      f.refused_ns = v.refused_ns;
      f.pause_end_ns = std::max(v.pause_end_ns, long_pause_end_ns_);
      f.drop_requested_ns = drop_requested_ns_;
      f.may_be_replaced = may_be_replaced_;
      f.takeover_after_ns = deadline_ns;
      // Never synced on this stream (snapshot not applied yet) and nothing held: nothing at risk.
      AloneVerdict verdict = !replica_.partner_synced() && replica_.held() == 0 && !may_be_replaced_
                                 ? AloneVerdict::kPartnerOutOfSync
                                 : may_serve_alone(f);
      if (!link_) verdict = AloneVerdict::kPartnerGone;
      if (verdict != AloneVerdict::kHold) drop_replica(verdict);
    } else if (drop_requested_ns_ != 0) {
      drop_requested_ns_ = 0;  // the passive caught up after all
      announce();
    }
    return;
  }
  if (!wanted) return;
  replica_.want_connection(now, role_.epoch);  // the connector connects it, off this thread
  // The reply cache goes with the state: a request executed before this stream began, whose
  // answer its client never got, is answered from the cache after a takeover, not executed again.
  auto snapshot = [this](std::vector<std::byte>& state, std::vector<std::byte>& replies) {
    app_->snapshot(state);
    replies_.serialize(replies, kSnapshotReplyCacheBytes);
  };
  if (!replica_.start_if_connected(role_.epoch, snapshot)) return;
  ++stats_.resyncs;
  announce();
  VIADUCT_LOG(kInfo, "replicating " << config_.name << " to " << config_.partner_uri);
  if (on_replication) on_replication(true);
}

void ServiceServer::apply_replica_from_partner(transport::Channel& channel,
                                               std::uint64_t request_id,
                                               std::span<const std::byte> payload) {
  auto r = decode_replica(payload);
  if (!r) {
    (void)channel.respond(request_id, {}, kAppStatusBadRequest);
    return;
  }
  if (role_.role == Role::kActive || r->epoch < role_.epoch) {
    // The sender was replaced (by us, or by someone it has not heard of): it must not answer.
    std::array<std::byte, 8> epoch;
    transport::store_le<std::uint64_t>(epoch.data(), role_.epoch);
    (void)channel.respond(request_id, epoch, kAppStatusStaleEpoch);
    return;
  }
  // A member's word; acted on after the round (we are inside this channel's poll).
  if (r->epoch > role_.epoch) pending_epoch_ = std::max(pending_epoch_, r->epoch);
  if (r->kind == ReplicaKind::kSnapshot) {
    app_->restore(r->response);
    if (!replies_.restore(r->request)) {
      // A member sent it, so this is a bug, not an attack: say so, and serve on without them.
      notice("snapshot-reply-cache-malformed " + config_.name);
    }
    link_->set_in_sync(r->sync_gen);  // holds everything the active acknowledged, from here on
    notice("in-sync " + config_.name + " gen " + std::to_string(r->sync_gen));
  } else {
    app_->apply_replica(r->request, r->response);
    replies_.store(r->client_id, r->seq, r->app_status, r->response);
  }
  (void)channel.respond(request_id, {});
}

void ServiceServer::run(const std::atomic<bool>& stop) {
  PoliteSpin spin;
  while (!stop.load(std::memory_order_relaxed)) {
    // A passive has only replication to apply: it blocks (2 ms at most, for its takeover
    // deadline) instead of taking a core from the active and its clients.
    spin.after_poll(run_once(/*passive_timeout_ms=*/2));
  }
}

}  // namespace viaduct::cluster
