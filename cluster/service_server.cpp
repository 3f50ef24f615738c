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
    if (const auto* cached = owner_->replies_.find(header.client_id, header.seq)) {
      // Executed before (the answer was lost in a failover): answer again, do not execute again.
      (void)channel.respond(request.request_id, cached->response, cached->app_status);
      return;
    }
    auto& response = owner_->response_;
    response.clear();
    std::uint32_t status =
        owner_->app_->handle(request.payload.subspan(failover::kRequestHeaderBytes), response);
    owner_->replies_.store(header.client_id, header.seq, status, response);
    (void)channel.respond(request.request_id, response, status);
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
  if (event == RoleEvent::kTookOver) {
    server_->set_busy_poll(true);
    if (responder_) responder_->set_active(lookup_record());
  } else {
    // Stepped down: stop answering lookups and drop every client, so they look again.
    if (responder_) responder_->set_inactive(config_.name);
    server_->set_busy_poll(false);
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
    if (heard != 0 && partner_refused_ns_.load(std::memory_order_acquire) > heard &&
        partner_active_.load(std::memory_order_relaxed)) {
      apply(on_partner_silent(role_));  // a crash, not a hang: no reason to wait
      return;
    }
    std::int64_t last = heard != 0 ? heard : started_ns_;
    std::int64_t deadline_ns = (heard != 0 ? tunables::partner_takeover_after_ms.get()
                                           : tunables::partner_startup_grace_ms.get()) *
                               1'000'000;
    // Only an active partner's silence is a reason to take over.
    bool partner_was_active = heard == 0 || partner_active_.load(std::memory_order_relaxed);
    if (partner_was_active && steady_now_ns() - last > deadline_ns) apply(on_partner_silent(role_));
  }
}

std::size_t ServiceServer::run_once(int passive_timeout_ms) {
  bool passive = role_.role == Role::kPassive;
  std::size_t handled = server_->run_once(passive ? passive_timeout_ms : 0);
  if (passive) {
    std::uint64_t drained = 0;
    (void)!::read(wake_fd_, &drained, sizeof(drained));
  }
  // Lookups and role checks cost a syscall or a clock read: do them every 64 rounds (~µs apart).
  // A passive blocks between rounds, so it checks on every round.
  if ((++rounds_ & 63) == 0 || passive) {
    if (responder_) handled += responder_->handle_pending();
    check_role();
  }
  return handled;
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
      // The partner closed our connection (FIN or RST from its kernel): its process died or is
      // shutting down. A frozen partner keeps its sockets open and a cut link closes nothing, so
      // this is as good as a refused connect, and a crash is taken over without another round.
      if (channel->error().cause() == ConnLostCause::kDisconnected &&
          partner_heard_ns_.load(std::memory_order_acquire) != 0) {
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
