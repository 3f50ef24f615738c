#include "failover/session.hpp"
#include "transport/clock.hpp"

#include <array>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "failover/request_header.hpp"
#include "failover/service_hello.hpp"
#include "transport/polite_spin.hpp"

namespace viaduct::failover {

namespace tunables {
Tunable failover_call_deadline_ms("failover", "failover_call_deadline_ms", 5000, 1, 3600000,
                                  "a call fails with a clear error when no server answers for the "
                                  "name within this long");
Tunable failover_connect_timeout_ms("failover", "failover_connect_timeout_ms", 500, 1, 600000,
                                    "connect timeout to a server named by a lookup answer");
Tunable failover_suspect_after_ms(
    "failover", "failover_suspect_after_ms", 10, 1, 600000,
    "requests waiting this long without any answer make the session ask the lookup responders "
    "whether the partner took over");
Tunable failover_warm_standby(
    "failover", "failover_warm_standby", 1, 0, 1,
    "1: keep a connection to the passive partner open, so a failover to it needs no connect");
Tunable failover_skip_lookup(
    "failover", "failover_skip_lookup", 1, 0, 1,
    "1: a failover first goes straight to the partner our server named (over the standby "
    "connection when there is one), and looks the name up only if the partner does not take over");
Tunable failover_partner_wait_ms(
    "failover", "failover_partner_wait_ms", 100, 1, 600000,
    "how long a failover waits for the named partner to take over before it looks the name up");
Tunable failover_probe_interval_us("failover", "failover_probe_interval_us", 1000, 50, 60'000'000,
                                   "how often a suspicious session re-asks the lookup responders");
}  // namespace tunables

namespace {

using Clock = std::chrono::steady_clock;
double ms_between(std::int64_t a, std::int64_t b) {
  return static_cast<double>(b - a) / 1e6;
}

std::vector<std::byte> client_hello(std::uint64_t epoch, const std::string& name) {
  return encode_hello_app({HelloKind::kClient, epoch, name});
}

// The accept reply's hello: a claim (active, name, epoch) that the proof then checks.
bool verify_server_hello(std::span<const std::byte> app, const std::string& name,
                         std::uint64_t min_epoch, std::uint64_t* epoch) {
  auto hello = decode_hello_app(app);
  if (!hello || hello->kind != HelloKind::kActive || hello->name != name) return false;
  *epoch = hello->epoch;
  return *epoch >= min_epoch;
}

}  // namespace

Result<std::unique_ptr<Session>> Session::open(SessionOptions options) {
  if (options.name.empty() || options.name.size() > 31) {
    return Status(Code::kInvalidArgument, "service name must be 1..31 bytes");
  }
  if (options.lookup.empty()) return Status(Code::kInvalidArgument, "no lookup responders given");
  std::unique_ptr<Session> s(new Session());  // private constructor
  s->options_ = std::move(options);
  // Resolve the settings once: the tunables are only this session's defaults.
  SessionTuning& t = s->options_.tuning;
  auto resolve = [](std::int64_t& v, const Tunable& tunable) {
    if (v < 0) v = tunable.get();
  };
  resolve(t.call_deadline_ms, tunables::failover_call_deadline_ms);
  resolve(t.connect_timeout_ms, tunables::failover_connect_timeout_ms);
  resolve(t.suspect_after_ms, tunables::failover_suspect_after_ms);
  resolve(t.probe_interval_us, tunables::failover_probe_interval_us);
  resolve(t.warm_standby, tunables::failover_warm_standby);
  resolve(t.skip_lookup, tunables::failover_skip_lookup);
  resolve(t.partner_wait_ms, tunables::failover_partner_wait_ms);
  std::random_device rd;
  s->client_id_ = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  s->inflight_.resize(s->options_.max_outstanding);
  for (std::uint32_t i = s->options_.max_outstanding; i > 0; --i) s->free_.push_back(i - 1);
  return s;
}

Session::~Session() {
  if (standby_thread_.joinable()) {
    {
      std::lock_guard lock(standby_.mutex);
      standby_.stop = true;
    }
    standby_.wake.notify_all();
    standby_thread_.join();
  }
}

void Session::ask_partner_address() {
  if (!channel_) return;
  if (options_.tuning.warm_standby == 0 && options_.tuning.skip_lookup == 0) {
    return;
  }
  std::array<std::byte, kRequestHeaderBytes + 1> control{};
  encode_request_header({client_id_, kControlSeq}, control.data());
  control[kRequestHeaderBytes] = kControlPartnerAddress;
  (void)channel_->call_async(control, on_partner_address, this);
}

void Session::on_partner_address(void* user, const transport::Response& r) {
  auto* self = static_cast<Session*>(user);
  if (!r.status || r.app_status != 0 || r.payload.empty()) return;
  std::string uri(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
  if (!transport::Address::parse(uri) || uri == self->server_) return;
  self->partner_uri_ = uri;
  if (self->options_.tuning.warm_standby == 0) return;
  {
    std::lock_guard lock(self->standby_.mutex);
    if (self->standby_.uri == uri && self->standby_.ready) return;  // already standing by there
    self->standby_.want_uri = uri;
    self->standby_.epoch = self->epoch_seen_;
  }
  if (!self->standby_thread_.joinable()) {
    self->standby_thread_ = std::thread([self] { self->standby_loop(); });
  }
  self->standby_.wake.notify_all();
}

void Session::standby_loop() {
  auto backoff = std::chrono::milliseconds(20);
  std::unique_lock lock(standby_.mutex);
  auto tick = std::chrono::milliseconds(
      std::max<std::int64_t>(1, transport::tunables::channel_keepalive_interval_ms.get()));
  for (;;) {
    // While it stands by, the connection is this thread's to keep alive: both ends expect a
    // heartbeat every keep-alive interval on an idle connection.
    while (!standby_.stop && standby_.want_uri.empty()) {
      if (standby_.channel) {
        (void)standby_.channel->poll();
        standby_.channel->check_liveness();
      }
      standby_.wake.wait_for(lock, tick);
    }
    if (standby_.stop) return;
    std::string uri = standby_.want_uri;
    std::uint64_t epoch = standby_.epoch;
    lock.unlock();
    auto address = transport::Address::parse(uri);
    std::unique_ptr<transport::Domain> domain;
    std::unique_ptr<transport::Channel> channel;
    if (address) {
      auto d = transport::Domain::open(address.value());
      if (d) {
        std::vector<std::byte> hello = encode_hello_app({HelloKind::kWarm, epoch, options_.name});
        transport::ChannelOptions copts;
        copts.hello_app = hello;
        auto c = transport::Channel::connect(*d.value(), address.value(), copts,
                                             static_cast<int>(options_.tuning.connect_timeout_ms));
        // The passive accepts a standby with its own hello ('S', same name).
        auto reply = c ? decode_hello_app(c.value()->peer_hello_app()) : Result<Hello>(c.status());
        if (reply && reply->kind == HelloKind::kStandby && reply->name == options_.name) {
          domain = std::move(d.value());
          channel = std::move(c.value());
        }
      }
    }
    lock.lock();
    if (standby_.stop) return;
    if (channel && standby_.want_uri == uri) {
      standby_.channel.reset();  // a previous standby, if any, goes before its domain
      standby_.domain = std::move(domain);
      standby_.channel = std::move(channel);
      standby_.uri = uri;
      standby_.ready = true;
      standby_.want_uri.clear();
      backoff = std::chrono::milliseconds(20);
      continue;
    }
    if (!channel) {
      // The partner is down, or not passive yet: try again later (a returning server).
      channel.reset();
      domain.reset();
      standby_.wake.wait_for(lock, backoff, [&] { return standby_.stop; });
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(1));
    }
  }
}

std::unique_ptr<transport::Channel> Session::take_standby(const std::string& uri) {
  std::lock_guard lock(standby_.mutex);
  if (!standby_.ready || standby_.uri != uri || !standby_.channel->healthy()) return nullptr;
  // The previous channel is gone (fail_over closed it), so its domain may go too.
  adopted_domain_ = std::move(standby_.domain);
  standby_.ready = false;
  standby_.uri.clear();
  return std::move(standby_.channel);
}

void Session::on_channel_response(void* user, const transport::Response& r) {
  auto* slot = static_cast<Inflight*>(user);
  ++slot->session->completions_;
  if (!slot->active) return;
  if (!r.status || r.app_status == kAppStatusNotActive) {
    // Lost with the connection, or refused by a server that stepped down: re-sent after failover.
    if (slot->sent) {
      slot->sent = false;
      ++slot->session->unsent_;
    }
    slot->session->broken_ = true;
    return;
  }
  slot->session->finish(*slot, r);
}

void Session::finish(Inflight& slot, const transport::Response& r) {
  transport::ResponseFn fn = slot.fn;
  void* user = slot.user;
  if (!slot.sent) --unsent_;
  slot.active = false;
  free_.push_back(static_cast<std::uint32_t>(&slot - inflight_.data()));
  --outstanding_;
  if (fn != nullptr) fn(user, r);
}

Status Session::send(Inflight& slot) {
  Status s = channel_->call_async(slot.frame, on_channel_response, &slot);
  if (s && !slot.sent) {
    slot.sent = true;
    --unsent_;
  }
  return s;
}

Status Session::call_async(std::span<const std::byte> request, transport::ResponseFn fn,
                           void* user) {
  if (free_.empty()) return {Code::kWouldBlock, "too many requests outstanding"};
  std::uint32_t index = free_.back();
  free_.pop_back();
  Inflight& slot = inflight_[index];
  slot.session = this;
  slot.seq = next_seq_++;
  slot.frame.resize(kRequestHeaderBytes + request.size());
  encode_request_header({client_id_, slot.seq}, slot.frame.data());
  if (!request.empty())
    std::memcpy(slot.frame.data() + kRequestHeaderBytes, request.data(), request.size());
  slot.fn = fn;
  slot.user = user;
  slot.deadline_ns = steady_now_ns() + options_.tuning.call_deadline_ms * 1'000'000;
  slot.active = true;
  slot.sent = false;
  ++unsent_;
  ++outstanding_;
  if (!broken_ && channel_ && channel_->healthy()) {
    Status s = send(slot);
    if (!s && s.code() != Code::kWouldBlock) broken_ = true;
  }
  return Status::ok();
}

std::size_t Session::poll() {
  std::size_t n = 0;
  if (channel_ && !broken_) {
    n = channel_->poll();
    if (!channel_->healthy()) broken_ = true;
    // Requests that found the channel busy are sent as room frees up.
    for (auto& slot : inflight_) {
      if (broken_ || unsent_ == 0) break;
      if (slot.active && !slot.sent && !send(slot).is_ok()) break;
    }
  }
  if (broken_ && outstanding_ > 0) fail_over();
  if ((++polls_ & 63) == 0 && outstanding_ > 0) {
    std::int64_t now = steady_now_ns();
    if ((polls_ & 255) == 0) expire(now);
    watch_for_takeover(now);
  }
  return n;
}

LookupProbe* Session::lookup_probe() {
  if (!probe_) {
    auto p = LookupProbe::open(options_.lookup);
    if (p) probe_ = std::make_unique<LookupProbe>(std::move(p.value()));
  }
  return probe_.get();
}

void Session::watch_for_takeover(std::int64_t now) {
  if (completions_ != completions_seen_ || last_progress_ns_ == 0) {
    completions_seen_ = completions_;
    last_progress_ns_ = now;
    next_probe_ns_ = 0;
    return;
  }
  if (broken_ || now - last_progress_ns_ < options_.tuning.suspect_after_ms * 1'000'000) {
    return;
  }
  if (lookup_probe() == nullptr) return;  // no socket: the keep-alive and deadlines still apply
  if (auto answer = probe_->receive(options_.name)) {
    if (answer->record.epoch > epoch_seen_) {
      // The partner took over while our server went silent: it is stale, whatever its socket
      // says. Fail over now with this answer instead of waiting for the keep-alive.
      takeover_answer_ = std::move(answer);
      broken_ = true;
      return;
    }
  }
  if (now >= next_probe_ns_) {
    probe_->send(options_.name);
    ++probes_sent_;
    next_probe_ns_ = now + options_.tuning.probe_interval_us * 1000;
  }
}

void Session::expire(std::int64_t now) {
  for (auto& slot : inflight_) {
    if (slot.active && now > slot.deadline_ns) {
      transport::Response r;
      r.status =
          Status(Code::kTimeout, "no server answers for '" + options_.name + "' within " +
                                     std::to_string(options_.tuning.call_deadline_ms) + " ms");
      finish(slot, r);
    }
  }
}

Result<std::unique_ptr<transport::Channel>> Session::connect_verified(
    const transport::Address& address, std::uint64_t min_epoch, std::uint64_t* epoch,
    FailoverTimings& timings) {
  if (!domain_ || domain_->backend() != address.backend) {
    auto d = transport::Domain::open(address);
    if (!d) return d.status();
    domain_ = std::move(d.value());
  }
  auto hello = client_hello(epoch_seen_, options_.name);
  transport::ChannelOptions copts;
  copts.hello_app = hello;
  std::int64_t c0 = steady_now_ns();
  auto ch = transport::Channel::connect(*domain_, address, copts,
                                        static_cast<int>(options_.tuning.connect_timeout_ms));
  timings.connect_ms += ms_between(c0, steady_now_ns());
  if (!ch) return ch.status();
  if (!verify_server_hello(ch.value()->peer_hello_app(), options_.name, min_epoch, epoch)) {
    return Status(Code::kRejected, "not the active server for '" + options_.name + "'");
  }
  if (options_.server_key) {
    // The hello is a claim; the proof is the server's signature over our nonce, name and epoch.
    auto proven =
        ask_epoch(*ch.value(), steady_now_ns() + options_.tuning.connect_timeout_ms * 1'000'000);
    if (!proven || proven.value() < min_epoch || proven.value() == 0) {
      return Status(Code::kUnauthenticated, "server at " + address.to_string() +
                                                " could not prove it serves '" + options_.name +
                                                "'");
    }
    *epoch = proven.value();
  }
  return ch;
}

void Session::resume_on(std::unique_ptr<transport::Channel> channel, std::string uri,
                        std::uint64_t epoch, std::int64_t t0, FailoverTimings& timings) {
  epoch_seen_ = epoch;
  last_progress_ns_ = 0;  // a fresh server: suspicion starts over
  server_ = std::move(uri);
  channel_ = std::move(channel);
  broken_ = false;
  for (auto& slot : inflight_) {
    if (slot.active && send(slot).is_ok()) ++timings.replayed;
  }
  // The server's partner becomes the next failover's target (and standby): for the first
  // server, and after a failover the old active, once back as passive.
  partner_uri_.clear();  // until this server names its own
  ask_partner_address();
  if (ever_connected_) {
    ++failovers_;
    timings.total_ms = ms_between(t0, steady_now_ns());
    last_ = timings;
  }
  ever_connected_ = true;
}

std::optional<std::uint64_t> Session::ask_epoch(transport::Channel& channel, std::int64_t until) {
  // With a pinned service key the server proves its name and epoch (failover/server_proof.hpp);
  // without one, it only states its epoch.
  std::array<std::byte, kRequestHeaderBytes + 1 + kProofNonceBytes> control{};
  encode_request_header({client_id_, kControlSeq}, control.data());
  ProofNonce nonce{};
  std::span<const std::byte> request(control.data(), kRequestHeaderBytes + 1);
  if (options_.server_key) {
    nonce = fresh_proof_nonce();
    control[kRequestHeaderBytes] = kControlProve;
    std::memcpy(control.data() + kRequestHeaderBytes + 1, nonce.data(), nonce.size());
    request = control;
  } else {
    control[kRequestHeaderBytes] = kControlEpoch;
  }
  std::array<std::byte, kProofAnswerBytes> answer{};
  transport::SyncCall sync;
  sync.out = answer;
  if (!channel.call_async(request, transport::SyncCall::on_response, &sync)) return std::nullopt;
  PoliteSpin spin;  // the partner is taking over on these same cores: leave it room
  while (!sync.done && channel.healthy() && steady_now_ns() < until)
    spin.after_poll(channel.poll());
  if (!sync.done) return std::nullopt;  // broken, or no answer in time: the partner is no use
  std::uint32_t app_status = 0;
  auto n = sync.result(&app_status);
  if (!n) return std::nullopt;
  if (app_status == kAppStatusNotActive) return 0;
  if (app_status != 0) return std::nullopt;
  if (options_.server_key) {
    auto proven =
        verify_proof({answer.data(), n.value()}, *options_.server_key, options_.name, nonce);
    if (!proven) {
      ++proofs_failed_;
      return std::nullopt;  // not a server of this name: never adopted
    }
    return proven.value();
  }
  if (n.value() != 8) return std::nullopt;
  return transport::load_le<std::uint64_t>(answer.data());
}

bool Session::fail_over_to_partner(std::int64_t t0, std::int64_t deadline,
                                   FailoverTimings& timings) {
  const std::string uri = partner_uri_;
  auto address = transport::Address::parse(uri);
  if (!address) return false;
  std::int64_t give_up = std::min(deadline, t0 + options_.tuning.partner_wait_ms * 1'000'000);
  std::int64_t retry_ns = tunables::lookup_retry_interval_us.get() * 1000;
  std::unique_ptr<transport::Channel> standby = take_standby(uri);
  // Meanwhile the lookup responders are asked too: if the partner does not take over (our
  // server is alive and only our connection broke, say), their answer says where to go.
  // Answers still waiting from before the failure (the hang probe's, naming the server that just
  // died) would send us there first: drop them, only answers to this failover's probes count.
  if (lookup_probe() != nullptr) {
    for (int i = 0; i < 64 && probe_->receive(options_.name); ++i) {
    }
  }
  std::int64_t next_probe = 0;
  while (steady_now_ns() < give_up) {
    std::uint64_t epoch = 0;
    if (standby) {
      auto e = ask_epoch(*standby, give_up);
      if (!e) standby.reset();  // the partner is unreachable too: the lookup decides
      epoch = e.value_or(0);
      if (epoch > epoch_seen_) {
        timings.used_standby = true;  // the partner took over: our standby is a client channel
        timings.skipped_lookup = true;
        resume_on(std::move(standby), uri, epoch, t0, timings);
        return true;
      }
    } else {
      auto ch = connect_verified(address.value(), epoch_seen_ + 1, &epoch, timings);
      if (ch) {
        timings.skipped_lookup = true;
        resume_on(std::move(ch.value()), uri, epoch, t0, timings);
        return true;
      }
    }
    if (probe_) {
      if (auto answer = probe_->receive(options_.name)) {
        if (answer->record.epoch >= epoch_seen_) {
          takeover_answer_ = std::move(answer);  // the lookup loop takes it from here
          return false;
        }
      }
      std::int64_t now = steady_now_ns();
      if (now >= next_probe) {
        probe_->send(options_.name);
        next_probe = now + options_.tuning.probe_interval_us * 1000;
      }
    }
    // Not taken over yet (it notices the crash about when we do): ask again shortly. Sleep,
    // not spin: on a small machine the partner needs the core to take over.
    std::int64_t wait_ns = std::min(give_up - steady_now_ns(), retry_ns);
    if (wait_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait_ns));
  }
  return false;
}

void Session::fail_over() {
  std::int64_t t0 = steady_now_ns();
  FailoverTimings timings;
  timings.noticed_at_ns = t0;
  if (channel_) {
    channel_->close();  // pending calls come back failed and are marked for re-sending
    channel_.reset();
  }
  for (auto& slot : inflight_) {
    if (slot.active && slot.sent) {
      slot.sent = false;
      ++unsent_;
    }
  }
  cache_.purge(options_.name);
  // The earliest deadline among requests in flight bounds how long we keep looking.
  std::int64_t deadline = INT64_MAX;
  for (const auto& slot : inflight_) {
    if (slot.active) deadline = std::min(deadline, slot.deadline_ns);
  }
  // The partner named by our server is who takes over: go there first, without a lookup.
  if (!takeover_answer_ && !partner_uri_.empty() && options_.tuning.skip_lookup != 0) {
    if (fail_over_to_partner(t0, deadline, timings)) return;
  }
  while (steady_now_ns() < deadline) {
    auto left_ms =
        static_cast<int>(std::max<std::int64_t>(1, (deadline - steady_now_ns()) / 1'000'000));
    std::int64_t l0 = steady_now_ns();
    ++timings.lookups;
    Result<LookupAnswer> answer = Status(Code::kTimeout, "");
    if (takeover_answer_) {
      answer = std::move(*takeover_answer_);  // the hang probe's answer is this lookup
      takeover_answer_.reset();
      timings.from_probe = true;
    } else {
      answer = lookup(options_.name, options_.lookup, left_ms);
    }
    timings.lookup_ms += ms_between(l0, steady_now_ns());
    if (!answer) break;  // nobody answers for the name: the requests time out below
    const auto& rec = answer->record;
    if (rec.epoch < epoch_seen_) continue;  // a stale (or spoofed) answer: ask again
    transport::Address address;
    address.host = rec.server_name;
    if (rec.tcp_port != 0) {
      address.backend = transport::BackendKind::kOfiTcp;
      address.port = rec.tcp_port;
    } else {
      address.backend = transport::BackendKind::kVerbs;
      address.port = rec.via_port;
    }
    std::string uri = address.to_string();
    if (rec.epoch > epoch_seen_) {
      if (auto standby = take_standby(uri)) {
        // The lookup names the partner we already stand by at, with a newer epoch: it may have
        // taken over. A UDP answer is only a hint: the partner itself must say (prove, with a
        // pinned key) that it is active, at which epoch, before we adopt either.
        auto proven =
            ask_epoch(*standby, steady_now_ns() + options_.tuning.connect_timeout_ms * 1'000'000);
        if (proven && proven.value() > epoch_seen_) {
          timings.used_standby = true;
          cache_.put(rec);
          resume_on(std::move(standby), std::move(uri), proven.value(), t0, timings);
          return;
        }
      }
    }
    std::uint64_t epoch = 0;
    auto ch = connect_verified(address, epoch_seen_, &epoch, timings);
    if (!ch) continue;  // refused, unreachable, or not the active for this name: look again
    cache_.put(rec);
    resume_on(std::move(ch.value()), std::move(uri), epoch, t0, timings);
    return;
  }
  expire(INT64_MAX);  // nobody took over in time: every waiting request gets the clear error
}

Result<std::size_t> Session::call(std::span<const std::byte> request, std::span<std::byte> response,
                                  std::uint32_t* app_status) {
  transport::SyncCall sync;
  sync.out = response;
  VIADUCT_RETURN_IF_ERROR(call_async(request, transport::SyncCall::on_response, &sync));
  PoliteSpin spin;
  while (!sync.done) spin.after_poll(poll());
  return sync.result(app_status);
}

}  // namespace viaduct::failover
