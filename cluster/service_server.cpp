#include "cluster/service_server.hpp"
#include "transport/clock.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "failover/request_header.hpp"
#include "transport/polite_spin.hpp"
#include "transport/tunables.hpp"

namespace viaduct::cluster {

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
    "a passive that never heard its partner waits this long to take over");
}  // namespace tunables

namespace {

// Runs per request: the hello was validated by admit(), so its kind byte alone is enough (no
// decode, no allocation on the serving path).
bool is_partner_channel(const transport::Channel& c) {
  auto app = c.peer_hello_app();
  return !app.empty() && app[0] == static_cast<std::byte>(HelloKind::kPartner);
}

std::vector<std::byte> text_bytes(const char* s) {
  std::vector<std::byte> v(std::strlen(s));
  std::memcpy(v.data(), s, v.size());
  return v;
}

}  // namespace

// Routes partner pings to the role logic and client requests to the application (while active).
class ServiceServer::Dispatcher final : public transport::RequestHandler {
 public:
  explicit Dispatcher(ServiceServer* owner) : owner_(owner) {}
  void on_request(transport::Channel& channel, const transport::IncomingRequest& request) override {
    if (is_partner_channel(channel)) {
      if (is_replica(request.payload)) {
        owner_->apply_replica_from_partner(channel, request.request_id, request.payload);
        return;
      }
      auto ping = decode_ping(request.payload);
      if (!ping) {
        (void)channel.respond(request.request_id, {}, kAppStatusNotActive);
        return;
      }
      owner_->partner_epoch_.store(ping->epoch, std::memory_order_relaxed);
      owner_->partner_active_.store(ping->role == WireRole::kActive, std::memory_order_relaxed);
      owner_->partner_heard_ns_.store(steady_now_ns(), std::memory_order_release);
      owner_->check_role();  // a newer epoch must take effect before anything else is served
      std::array<std::byte, kPingBytes> pong;
      encode_ping({owner_->role_.role == Role::kActive ? WireRole::kActive : WireRole::kPassive,
                   owner_->role_.epoch},
                  pong);
      (void)channel.respond(request.request_id, pong);
      return;
    }
    if (owner_->role_.role != Role::kActive) {
      (void)channel.respond(request.request_id, {}, kAppStatusNotActive);
      return;
    }
    failover::RequestHeader header;
    if (!failover::decode_request_header(request.payload, &header)) {
      (void)channel.respond(request.request_id, {}, kAppStatusBadRequest);
      return;
    }
    if (header.seq == failover::kControlSeq) {
      auto op = request.payload.subspan(failover::kRequestHeaderBytes);
      if (op.size() == 1 && op[0] == failover::kControlPartnerAddress) {
        const std::string& uri = owner_->config_.partner_uri;
        (void)channel.respond(request.request_id, std::as_bytes(std::span(uri.data(), uri.size())));
      } else if (op.size() == 1 && op[0] == failover::kControlEpoch) {
        std::array<std::byte, 8> epoch;
        transport::store_le<std::uint64_t>(epoch.data(), owner_->role_.epoch);
        (void)channel.respond(request.request_id, epoch);
      } else {
        (void)channel.respond(request.request_id, {}, kAppStatusBadRequest);
      }
      return;
    }
    if (const auto* cached = owner_->replies_.find(header.client_id, header.seq)) {
      // Executed before (the answer was lost in a failover): answer again, do not execute again.
      // Behind answers still waiting for the partner, it waits too: it may be one of them.
      if (owner_->held_count_ == 0) {
        (void)channel.respond(request.request_id, cached->response, cached->app_status);
      } else {
        ServiceServer::Held& h = owner_->held_push();
        h.channel = &channel;
        h.request_id = request.request_id;
        h.replica_seq = 0;
        h.app_status = cached->app_status;
        h.response.assign(cached->response.begin(), cached->response.end());
      }
      return;
    }
    auto& response = owner_->response_;
    response.clear();
    auto app_request = request.payload.subspan(failover::kRequestHeaderBytes);
    std::uint32_t status = owner_->app_->handle(app_request, response);
    owner_->replies_.store(header.client_id, header.seq, status, response);
    owner_->answer_or_hold(channel, request.request_id, header.client_id, header.seq, app_request,
                           status);
  }

 private:
  ServiceServer* owner_;
};

Result<std::unique_ptr<ServiceServer>> ServiceServer::start(const ServiceConfig& config,
                                                            ServiceHandler* app) {
  if (config.name.empty() || config.name.size() > kMaxServiceNameBytes) {
    return Status(Code::kInvalidArgument, "service name must be 1..31 bytes");
  }
  auto listen = transport::Address::parse(config.listen_uri);
  if (!listen) return listen.status();
  std::unique_ptr<ServiceServer> s(new ServiceServer());  // private constructor
  s->config_ = config;
  s->app_ = app;
  // Epoch 1 belongs to the configured active. A passive starts knowing it, so even a takeover
  // before it has ever heard its partner (partner frozen or dead at start) claims epoch 2 or more
  // and can never tie with the active it replaces.
  s->role_ = {config.initial_role, 1};
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
    for (auto& h : raw->held_) {
      if (h.channel == &gone) h.channel = nullptr;
    }
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
  s->own_epoch_ = s->role_.epoch;
  s->own_active_ = s->role_.role == Role::kActive;
  if (s->role_.role == Role::kActive && s->responder_)
    s->responder_->set_active(s->lookup_record());
  if (!config.partner_uri.empty())
    s->monitor_ = std::thread([raw = s.get()] { raw->monitor_partner(); });
  return s;
}

ServiceServer::~ServiceServer() {
  stop_monitor_ = true;
  if (monitor_.joinable()) monitor_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void ServiceServer::connect_replica() {
  auto partner = transport::Address::parse(config_.partner_uri);
  if (!partner) return;
  auto domain = transport::Domain::open(partner.value());
  if (!domain) return;
  auto hello = encode_hello_app(
      {HelloKind::kPartner, own_epoch_.load(std::memory_order_relaxed), config_.name});
  transport::ChannelOptions options;
  options.hello_app = hello;
  options.busy_poll = true;  // polled by the serving loop, like the clients' channels
  auto c =
      transport::Channel::connect(*domain.value(), partner.value(), options,
                                  static_cast<int>(tunables::partner_ping_interval_ms.get() * 10));
  if (!c) return;  // the serving loop asks again later
  std::lock_guard lock(replica_handoff_mutex_);
  replica_handoff_ = std::move(c.value());  // the old pair (if any) is dropped in this order
  replica_handoff_domain_ = std::move(domain.value());
  replica_handoff_ready_.store(true, std::memory_order_release);
}

void ServiceServer::partner_gone() {
  partner_refused_ns_.store(steady_now_ns(), std::memory_order_release);
  std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
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
  auto hello = decode_hello_app(hello_app);
  if (!hello || hello->name != config_.name) {
    *reason = text_bytes(kRejectWrongName);
    return false;
  }
  if (hello->kind == HelloKind::kPartner) return true;
  if (hello->kind == HelloKind::kWarm) {
    // A client's standby connection: held while passive (its requests get not-active), served
    // like any client once this instance takes over. Pointless to an active.
    if (role_.role == Role::kPassive) return true;
    *reason = text_bytes(kRejectNotActive);
    return false;
  }
  if (hello->epoch > role_.epoch) {
    // The client has seen a newer active than us: we are stale, whatever we believed.
    apply(on_newer_epoch_seen(role_, hello->epoch));
    *reason = text_bytes(kRejectStaleEpoch);
    return false;
  }
  if (role_.role != Role::kActive) {
    *reason = text_bytes(kRejectNotActive);
    return false;
  }
  return true;
}

void ServiceServer::apply(RoleEvent event) {
  own_epoch_.store(role_.epoch, std::memory_order_relaxed);
  own_active_.store(role_.role == Role::kActive, std::memory_order_relaxed);
  if (event == RoleEvent::kNone) return;
  if (event == RoleEvent::kSteppedDown) passive_since_ns_ = steady_now_ns();
  if (event == RoleEvent::kTookOver) {
    server_->set_busy_poll(true);
    if (responder_) responder_->set_active(lookup_record());
  } else {
    // Stepped down: stop answering lookups and drop every client, so they look again.
    if (responder_) responder_->set_inactive(config_.name);
    server_->set_busy_poll(false);
    // Replaced: answers still waiting for the partner must never go out (the new active may
    // not have their effect). Their clients re-send to the new active.
    held_count_ = 0;
    replica_failed_ = true;  // the replica channel is dropped by tend_replica, outside its poll
    server_->close_if([](const transport::Channel& c) { return !is_partner_channel(c); });
  }
  if (on_role_change) on_role_change(event, role_);
}

void ServiceServer::check_role() {
  std::int64_t heard = partner_heard_ns_.load(std::memory_order_acquire);
  if (heard != 0) {
    apply(on_partner_heard(role_, partner_active_.load(std::memory_order_relaxed),
                           partner_epoch_.load(std::memory_order_relaxed), yield_on_tie_));
  }
  if (role_.role == Role::kPassive && !config_.partner_uri.empty()) {
    std::int64_t refused = partner_refused_ns_.load(std::memory_order_acquire);
    if (heard != 0 && refused > heard && refused > passive_since_ns_ &&
        partner_active_.load(std::memory_order_relaxed)) {
      takeover_reason_ = "partner-refused";
      apply(on_partner_silent(role_));  // a crash, not a hang: no reason to wait
      return;
    }
    // The partner's silence counts from the latest of: its last answer, our becoming passive
    // (a step-down may come from a replica ack or a client's hello while the last answer we
    // hold predates our own freeze), and our own resumption after a freeze or starvation.
    std::int64_t last =
        std::max({heard != 0 ? heard : started_ns_, passive_since_ns_, long_pause_end_ns_});
    std::int64_t deadline_ns = (heard != 0 ? tunables::partner_takeover_after_ms.get()
                                           : tunables::partner_startup_grace_ms.get()) *
                               1'000'000;
    // Only an active partner's silence is a reason to take over.
    bool partner_was_active = heard == 0 || partner_active_.load(std::memory_order_relaxed);
    std::int64_t silent_ns = steady_now_ns() - last;
    if (partner_was_active && silent_ns > deadline_ns) {
      takeover_reason_ = "partner-silent-ms " + std::to_string(silent_ns / 1'000'000);
      apply(on_partner_silent(role_));
    }
  }
}

std::size_t ServiceServer::run_once(int passive_timeout_ms) {
  bool passive = role_.role == Role::kPassive;
  std::size_t handled = server_->run_once(passive ? passive_timeout_ms : 0);
  if (replica_) handled += replica_->poll();
  if (passive) {
    std::uint64_t drained = 0;
    (void)!::read(wake_fd_, &drained, sizeof(drained));
  }
  // Lookups and role checks cost a syscall or a clock read: do them every 64 rounds (~µs apart).
  // A passive blocks between rounds, so it checks on every round.
  if ((++rounds_ & 63) == 0 || passive) {
    std::int64_t now = steady_now_ns();
    // This loop did not run for a while (frozen, or starved): before giving up on the partner,
    // give it time to tell us whether it took over meanwhile.
    if (last_round_ns_ != 0 && now - last_round_ns_ > 5'000'000) resumed_ns_ = now;
    // A pause long enough to explain the partner's silence by itself (half the takeover
    // deadline) restarts that silence: the partner gets a fair chance to answer first. Shorter
    // ones must not, or a machine that stutters all the time (TCG) would never take over.
    if (last_round_ns_ != 0 &&
        now - last_round_ns_ > tunables::partner_takeover_after_ms.get() * 500'000) {
      long_pause_end_ns_ = now;
    }
    last_round_ns_ = now;
    if (responder_) handled += responder_->handle_pending();
    check_role();
    tend_replica(now);
  }
  return handled;
}

ServiceServer::Held& ServiceServer::held_push() {
  if (held_count_ == held_.size()) {
    // Full (only under overload, or at the first requests): grow, keeping the order.
    std::vector<Held> bigger(std::max<std::size_t>(64, held_.size() * 2));
    for (std::size_t i = 0; i < held_count_; ++i) {
      bigger[i] = std::move(held_[(held_head_ + i) % held_.size()]);
    }
    held_ = std::move(bigger);
    held_head_ = 0;
  }
  return held_[(held_head_ + held_count_++) % held_.size()];
}

void ServiceServer::answer_or_hold(transport::Channel& channel, std::uint64_t request_id,
                                   std::uint64_t client_id, std::uint64_t seq,
                                   std::span<const std::byte> request, std::uint32_t status) {
  if (!replica_ || replica_failed_) {
    (void)channel.respond(request_id, response_, status);
    return;
  }
  encode_replica({ReplicaKind::kApply, role_.epoch, client_id, seq, status, request, response_},
                 replica_buf_);
  Status sent = replica_->call_async(replica_buf_, on_replica_ack, this);
  std::int64_t start = steady_now_ns();
  while (sent.code() == Code::kWouldBlock && !replica_failed_ &&
         steady_now_ns() - start < tunables::partner_takeover_after_ms.get() * 1'000'000) {
    (void)replica_->poll();  // acks free room
    sent = replica_->call_async(replica_buf_, on_replica_ack, this);
  }
  if (!sent) {
    replica_failed_ = true;  // dropped (and the held answers released) by tend_replica
    (void)channel.respond(request_id, response_, status);
    return;
  }
  Held& h = held_push();
  h.channel = &channel;
  h.request_id = request_id;
  h.replica_seq = next_replica_seq_++;
  h.sent_ns = steady_now_ns();
  h.app_status = status;
  h.response.assign(response_.begin(), response_.end());
}

void ServiceServer::release_front() {
  Held& h = held_[held_head_];
  if (h.channel != nullptr && h.channel->healthy()) {
    (void)h.channel->respond(h.request_id, h.response, h.app_status);
  }
  h.channel = nullptr;
  held_head_ = (held_head_ + 1) % held_.size();
  --held_count_;
}

void ServiceServer::on_replica_ack(void* user, const transport::Response& r) {
  auto* self = static_cast<ServiceServer*>(user);
  if (self->replica_failed_) return;
  if (!r.status) {
    self->replica_failed_ = true;
    return;
  }
  if (r.app_status == kAppStatusStaleEpoch) {
    std::uint64_t epoch =
        r.payload.size() == 8 ? transport::load_le<std::uint64_t>(r.payload.data()) : 0;
    if (epoch > self->role_.epoch) {
      self->apply(on_newer_epoch_seen(self->role_, epoch));
    } else {
      self->replica_failed_ = true;  // both active at one epoch: the pings' tie rule decides
    }
    return;
  }
  if (r.app_status != 0) {
    self->replica_failed_ = true;  // the partner could not apply it: stop relying on it
    return;
  }
  ++self->acked_replica_seq_;
  ++self->replicated_;
  while (self->held_count_ > 0) {
    const Held& front = self->held_[self->held_head_];
    if (front.replica_seq != 0 && front.replica_seq > self->acked_replica_seq_) break;
    self->release_front();
  }
}

void ServiceServer::drop_replica() {
  // The partner is gone, or silent past its takeover deadline while this loop kept running:
  // serve alone. Answers waiting for it go out now.
  while (held_count_ > 0) release_front();
  replica_.reset();
  if (on_replication) on_replication(false);
  replica_failed_ = false;
  next_replica_attempt_ns_ =
      steady_now_ns() + tunables::partner_ping_interval_ms.get() * 20 * 1'000'000;
}

void ServiceServer::tend_replica(std::int64_t now) {
  bool wanted = role_.role == Role::kActive && !config_.partner_uri.empty() &&
                tunables::partner_replication.get() != 0;
  if (replica_) {
    std::int64_t deadline_ns = tunables::partner_takeover_after_ms.get() * 1'000'000;
    bool overdue =
        held_count_ > 0 && now - std::max(held_[held_head_].sent_ns, resumed_ns_) > deadline_ns;
    if (replica_failed_ || !replica_->healthy() || overdue || !wanted) {
      if (role_.role != Role::kActive) {
        held_count_ = 0;  // stepped down: never answer
        replica_.reset();
        replica_failed_ = false;
      } else {
        drop_replica();
      }
    }
    return;
  }
  if (!wanted) return;
  if (!replica_handoff_ready_.load(std::memory_order_acquire)) {
    if (now >= next_replica_attempt_ns_) {
      want_replica_.store(true, std::memory_order_release);  // the monitor connects it
      next_replica_attempt_ns_ = now + tunables::partner_ping_interval_ms.get() * 20 * 1'000'000;
    }
    return;
  }
  std::unique_ptr<transport::Channel> fresh;
  {
    std::lock_guard lock(replica_handoff_mutex_);
    fresh = std::move(replica_handoff_);
    replica_domain_ = std::move(replica_handoff_domain_);
    replica_handoff_ready_.store(false, std::memory_order_release);
  }
  if (!fresh || !fresh->healthy()) return;  // broke while waiting: asked for again later
  replica_ = std::move(fresh);
  replica_failed_ = false;
  next_replica_seq_ = 1;
  acked_replica_seq_ = 0;
  // The whole state first; every later request follows it on the same ordered channel.
  app_->snapshot(snapshot_buf_);
  encode_replica({ReplicaKind::kSnapshot, role_.epoch, 0, 0, 0, {}, snapshot_buf_}, replica_buf_);
  if (!replica_->call_async(replica_buf_, on_replica_ack, this)) {
    replica_failed_ = true;
    return;
  }
  ++next_replica_seq_;  // the snapshot's ack moves acked_replica_seq_ past it
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
  partner_epoch_.store(r->epoch, std::memory_order_relaxed);
  partner_active_.store(true, std::memory_order_relaxed);
  partner_heard_ns_.store(steady_now_ns(), std::memory_order_release);
  if (role_.role == Role::kActive || r->epoch < role_.epoch) {
    // The sender was replaced (by us, or by someone it has not heard of): it must not answer.
    std::array<std::byte, 8> epoch;
    transport::store_le<std::uint64_t>(epoch.data(), role_.epoch);
    (void)channel.respond(request_id, epoch, kAppStatusStaleEpoch);
    return;
  }
  if (r->kind == ReplicaKind::kSnapshot) {
    app_->restore(r->response);
  } else {
    app_->apply_replica(r->request, r->response);
    replies_.store(r->client_id, r->seq, r->app_status, r->response);
  }
  (void)channel.respond(request_id, {});
}

void ServiceServer::run(const std::atomic<bool>& stop) {
  PoliteSpin spin;
  while (!stop.load(std::memory_order_relaxed)) {
    // A passive has only its partner's pings to answer: it blocks (2 ms at most, for its
    // takeover deadline) instead of taking a core from the active and its clients.
    spin.after_poll(run_once(/*passive_timeout_ms=*/2));
  }
}

void ServiceServer::monitor_partner() {
  auto partner = transport::Address::parse(config_.partner_uri);
  if (!partner) return;
  auto domain = transport::Domain::open(partner.value());
  if (!domain) return;
  auto interval = std::chrono::milliseconds(tunables::partner_ping_interval_ms.get());
  std::unique_ptr<transport::Channel> channel;
  struct Pong {
    ServiceServer* owner;
    bool waiting = false;
  } pong{this};
  auto on_pong = [](void* user, const transport::Response& r) {
    auto* p = static_cast<Pong*>(user);
    p->waiting = false;
    if (!r.status) return;
    auto ping = decode_ping(r.payload);
    if (!ping) return;
    p->owner->partner_epoch_.store(ping->epoch, std::memory_order_relaxed);
    p->owner->partner_active_.store(ping->role == WireRole::kActive, std::memory_order_relaxed);
    p->owner->partner_heard_ns_.store(steady_now_ns(), std::memory_order_release);
  };
  auto next_ping = std::chrono::steady_clock::now();
  auto retry = interval;
  while (!stop_monitor_.load(std::memory_order_relaxed)) {
    if (channel && !channel->healthy()) {
      // Closed by the partner's kernel (FIN or RST). From a partner that answered us a moment
      // ago, that is its process dying: a frozen partner keeps its sockets open and a cut link
      // closes nothing, so a crash is taken over without another round. From a partner we have
      // not heard for a while, it may instead have dropped us (its keep-alive gave up while we
      // were frozen or starved): only a refused reconnect, tried at once below, says it is gone.
      std::int64_t heard = partner_heard_ns_.load(std::memory_order_acquire);
      if (channel->error().cause() == ConnLostCause::kDisconnected && heard != 0 &&
          steady_now_ns() - heard < tunables::partner_takeover_after_ms.get() * 1'000'000) {
        partner_gone();
      }
      channel.reset();
    }
    if (!channel) {
      pong.waiting = false;
      auto hello = encode_hello_app(
          {HelloKind::kPartner, own_epoch_.load(std::memory_order_relaxed), config_.name});
      transport::ChannelOptions options;
      options.hello_app = hello;
      options.recv_slots = 8;
      // Blocks on the CQ's and EQ's fds between pings: no CPU taken from the serving loop, and
      // a disconnect still wakes it at once.
      options.busy_poll = false;
      // Short: a frozen partner accepts TCP in the kernel but never answers the handshake.
      auto c = transport::Channel::connect(*domain.value(), partner.value(), options,
                                           static_cast<int>(interval.count() * 10));
      if (!c) {
        // Refused: no process listens on the partner's port. A frozen partner still has its
        // listening socket (the kernel completes the handshake) and a cut link times out, so only
        // a dead process looks like this.
        if (c.status().code() == Code::kRejected) partner_gone();
        // Each attempt builds an endpoint and registers its buffers: retrying a gone partner
        // every interval would take CPU from the serving loop just when it took over. Back off
        // up to 20 intervals (100 ms by default) between attempts.
        std::this_thread::sleep_for(retry);
        retry = std::min(retry * 2, interval * 20);
        continue;
      }
      retry = interval;
      partner_refused_ns_.store(0, std::memory_order_release);
      channel = std::move(c.value());
    }
    if (want_replica_.exchange(false, std::memory_order_acq_rel)) connect_replica();
    auto now = std::chrono::steady_clock::now();
    if (!pong.waiting && now >= next_ping) {
      std::array<std::byte, kPingBytes> ping;
      encode_ping(
          {own_active_.load(std::memory_order_relaxed) ? WireRole::kActive : WireRole::kPassive,
           own_epoch_.load(std::memory_order_relaxed)},
          ping);
      if (channel->call_async(ping, on_pong, &pong).is_ok()) pong.waiting = true;
      next_ping = now + interval;
    }
    if (channel->poll() == 0) {
      auto until_ping = std::chrono::duration_cast<std::chrono::milliseconds>(
                            next_ping - std::chrono::steady_clock::now())
                            .count();
      (void)channel->wait(static_cast<int>(std::clamp<std::int64_t>(until_ping, 1, 1000)));
    }
  }
}

}  // namespace viaduct::cluster
