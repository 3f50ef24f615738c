#include "failover/session.hpp"
#include "transport/clock.hpp"

#include <poll.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "failover/request_header.hpp"
#include "failover/service_hello.hpp"
#include "transport/log.hpp"
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

constexpr std::int64_t kFastLookupRetryWindowNs = 50'000'000;  // as lookup(): see lookup_client.hpp
constexpr std::int64_t kMaxLookupRetryNs = 50'000'000;

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

transport::Address address_of(const ssrp::InstanceRecord& rec) {
  transport::Address address;
  address.host = rec.server_name;
  if (rec.tcp_port != 0) {
    address.backend = transport::BackendKind::kOfiTcp;
    address.port = rec.tcp_port;
  } else {
    address.backend = transport::BackendKind::kVerbs;
    address.port = rec.via_port;
  }
  return address;
}

}  // namespace

const char* failover_state_name(FailoverState state) {
  switch (state) {
    case FailoverState::kSteady:
      return "steady";
    case FailoverState::kPartnerProving:
      return "partner-proving";
    case FailoverState::kPartnerConnecting:
      return "partner-connecting";
    case FailoverState::kPartnerWaiting:
      return "partner-waiting";
    case FailoverState::kLookingUp:
      return "looking-up";
    case FailoverState::kConnecting:
      return "connecting";
    case FailoverState::kProving:
      return "proving";
  }
  return "unknown";
}

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
  // Half the interval: a heartbeat is due after an interval of quiet, and must not wait for
  // almost a second one.
  auto tick = std::chrono::milliseconds(
      std::max<std::int64_t>(1, transport::tunables::channel_keepalive_interval_ms.get() / 2));
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

std::unique_ptr<transport::Channel> Session::take_standby(
    const std::string& uri, std::unique_ptr<transport::Domain>* domain) {
  std::lock_guard lock(standby_.mutex);
  if (!standby_.ready || standby_.uri != uri || !standby_.channel->healthy()) return nullptr;
  *domain = std::move(standby_.domain);
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
  // During a failover (broken_) the request waits in its slot: resume_on sends it.
  if (!broken_ && channel_ && channel_->healthy()) {
    Status s = send(slot);
    if (!s && s.code() != Code::kWouldBlock) broken_ = true;
  }
  return Status::ok();
}

std::size_t Session::poll() {
  if (state_ != FailoverState::kSteady) return step_failover();
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
  if (broken_ && outstanding_ > 0) {
    // The first step (the partner asked over the standby, a lookup sent, or a connect started)
    // happens here; its outcome is taken by the next poll(). So a poll() never spans a whole
    // failover, however the scheduler stretches it.
    begin_failover(steady_now_ns());
    return n;
  }
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

void Session::resume_on(std::uint64_t epoch) {
  FailoverTimings& timings = run_.timings;
  if (candidate_.record) cache_.put(*candidate_.record);
  state_ = FailoverState::kSteady;
  epoch_seen_ = epoch;
  last_progress_ns_ = 0;  // a fresh server: suspicion starts over
  server_ = std::move(candidate_.uri);
  channel_.reset();  // (closed when the failover began) before the Domain it lived in
  // The old Domain is closed on the helper thread: closing a fabric takes a while, and the
  // requests below are waiting.
  connector_.retire(std::move(domain_));
  domain_ = std::move(candidate_.domain);
  channel_ = std::move(candidate_.channel);
  candidate_.clear();
  lookup_socket_.reset();
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
    timings.total_ms = ms_between(run_.t0, steady_now_ns());
    last_ = timings;
    VIADUCT_LOG(kInfo, "session " << options_.name << " failed over to " << server_ << " epoch "
                                  << epoch << " in " << timings.total_ms << " ms, "
                                  << timings.replayed << " requests re-sent");
    if (on_failover) on_failover(last_, server_, epoch);
  }
  ever_connected_ = true;
}

// ---------------------------------------------------------------------------------------------
// The failover, one non-blocking step per poll().
//
// Every step returns at once: the lookup is a non-blocking UDP socket with its own re-send
// schedule, a connect runs on the connector's helper thread (Domain::connect blocks) and hands the
// channel over, and a proof is a request on the new channel that later polls complete. What used
// to be a sleep between two asks of the partner is now a state (kPartnerWaiting) with a time.

void Session::begin_failover(std::int64_t now) {
  run_ = FailoverRun{};
  run_.t0 = now;
  run_.timings.noticed_at_ns = now;
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
  // The partner named by our server is who takes over: go there first, without a lookup.
  if (!takeover_answer_ && !partner_uri_.empty() && options_.tuning.skip_lookup != 0 &&
      transport::Address::parse(partner_uri_)) {
    enter_partner(now);
  } else {
    enter_lookup(now);
  }
}

void Session::abandon_failover() {
  // Every request waiting for it ended (kTimeout): the next call starts a new one.
  connector_.cancel();
  candidate_.clear();
  lookup_socket_.reset();
  state_ = FailoverState::kSteady;
  broken_ = true;
}

std::size_t Session::step_failover() {
  if (state_ == FailoverState::kSteady) return 0;
  std::int64_t now = steady_now_ns();
  expire(now);  // cheap next to a failover: deadlines are exact while there is no server
  if (outstanding_ == 0) {
    abandon_failover();
    return 1;
  }
  std::size_t n = 0;
  switch (state_) {
    case FailoverState::kSteady:
      break;
    case FailoverState::kPartnerProving:
    case FailoverState::kProving: {
      n = candidate_.channel->poll();
      auto result = proof_result();
      if (!result && proof_.sync.done) {
        on_proof(std::nullopt, now);
      } else if (result) {
        on_proof(result, now);
      } else if (!candidate_.channel->healthy() || now >= proof_.until_ns) {
        on_proof(std::nullopt, now);  // broken, or no answer in time: this server is no use
      }
      break;
    }
    case FailoverState::kPartnerConnecting:
    case FailoverState::kConnecting:
      if (auto outcome = connector_.take()) {
        n = 1;
        on_connected(std::move(*outcome), now);
      }
      break;
    case FailoverState::kPartnerWaiting:
      if (now >= run_.partner_give_up_ns) {
        enter_lookup(now);
      } else if (now >= run_.next_attempt_ns) {
        try_partner(now);
      } else {
        after_partner_attempt(now);  // only watches the lookup meanwhile
      }
      break;
    case FailoverState::kLookingUp:
      step_lookup(now);
      break;
  }
  return n;
}

// --- The partner our server named ---

void Session::enter_partner(std::int64_t now) {
  std::int64_t deadline = INT64_MAX;  // the earliest deadline among requests in flight
  for (const auto& slot : inflight_) {
    if (slot.active) deadline = std::min(deadline, slot.deadline_ns);
  }
  run_.partner_give_up_ns = std::min(deadline, now + options_.tuning.partner_wait_ms * 1'000'000);
  // Meanwhile the lookup responders are asked too: if the partner does not take over (our
  // server is alive and only our connection broke, say), their answer says where to go.
  // Answers still waiting from before the failure (the hang probe's, naming the server that just
  // died) would send us there first: drop them, only answers to this failover's probes count.
  if (lookup_probe() != nullptr) {
    for (int i = 0; i < 64 && probe_->receive(options_.name); ++i) {
    }
  }
  candidate_.clear();
  candidate_.uri = partner_uri_;
  candidate_.address = transport::Address::parse(partner_uri_).value();
  candidate_.min_epoch = epoch_seen_ + 1;
  candidate_.channel = take_standby(partner_uri_, &candidate_.domain);
  candidate_.standby = candidate_.channel != nullptr;
  try_partner(now);
}

void Session::try_partner(std::int64_t now) {
  if (candidate_.standby && candidate_.channel) {
    // Ask over the standby whether it took over (with a pinned key: prove it).
    if (ask_proof(run_.partner_give_up_ns)) {
      state_ = FailoverState::kPartnerProving;
      return;
    }
    candidate_.drop_channel();  // the partner is unreachable too: the lookup decides
    after_partner_attempt(now);
    return;
  }
  state_ = FailoverState::kPartnerConnecting;
  start_connect(candidate_.address, now);
}

void Session::after_partner_attempt(std::int64_t now) {
  if (now >= run_.partner_give_up_ns) {
    enter_lookup(now);
    return;
  }
  if (probe_) {
    if (auto answer = probe_->receive(options_.name)) {
      if (answer->record.epoch >= epoch_seen_) {
        takeover_answer_ = std::move(answer);  // the lookup takes it from here
        enter_lookup(now);
        return;
      }
    }
    if (now >= run_.next_partner_probe_ns) {
      probe_->send(options_.name);
      run_.next_partner_probe_ns = now + options_.tuning.probe_interval_us * 1000;
    }
  }
  // Not taken over yet (it notices the crash about when we do): ask again shortly.
  if (state_ != FailoverState::kPartnerWaiting) {
    state_ = FailoverState::kPartnerWaiting;
    run_.next_attempt_ns = now + tunables::lookup_retry_interval_us.get() * 1000;
  }
}

// --- The lookup ---

void Session::enter_lookup(std::int64_t now) {
  if (state_ == FailoverState::kPartnerConnecting) connector_.cancel();
  candidate_.clear();
  ++run_.timings.lookups;
  run_.lookup_started_ns = now;
  if (takeover_answer_) {
    // The hang probe's (or the partner phase's) answer is this lookup.
    LookupAnswer answer = std::move(*takeover_answer_);
    takeover_answer_.reset();
    run_.timings.from_probe = true;
    on_lookup_answer(answer, now);
    return;
  }
  // A fresh socket per lookup, as lookup() does: only answers to this question count.
  lookup_socket_.reset();
  if (auto socket = LookupProbe::open(options_.lookup)) {
    lookup_socket_ = std::make_unique<LookupProbe>(std::move(socket.value()));
  }
  state_ = FailoverState::kLookingUp;
  run_.next_lookup_send_ns = now;
  run_.lookup_retry_ns = tunables::lookup_retry_interval_us.get() * 1000;
  step_lookup(now);
}

void Session::step_lookup(std::int64_t now) {
  if (!lookup_socket_) {
    // No socket (descriptors exhausted?): try again at the next re-send; deadlines still apply.
    if (now < run_.next_lookup_send_ns) return;
    auto socket = LookupProbe::open(options_.lookup);
    if (!socket) {
      run_.next_lookup_send_ns = now + run_.lookup_retry_ns;
      return;
    }
    lookup_socket_ = std::make_unique<LookupProbe>(std::move(socket.value()));
  }
  // Re-sent as lookup() does: often for the first 50 ms (UDP may drop, and the partner is
  // usually a moment from taking over), then at doubling intervals up to 50 ms.
  if (now >= run_.next_lookup_send_ns) {
    lookup_socket_->send(options_.name);
    run_.next_lookup_send_ns = now + run_.lookup_retry_ns;
    if (now - run_.lookup_started_ns >= kFastLookupRetryWindowNs) {
      run_.lookup_retry_ns = std::min(run_.lookup_retry_ns * 2, kMaxLookupRetryNs);
    }
  }
  if (auto answer = lookup_socket_->receive(options_.name)) {
    run_.timings.lookup_ms += ms_between(run_.lookup_started_ns, now);
    on_lookup_answer(*answer, now);
  }
}

void Session::on_lookup_answer(const LookupAnswer& answer, std::int64_t now) {
  const auto& rec = answer.record;
  if (rec.epoch < epoch_seen_) {  // a stale (or spoofed) answer: ask again
    enter_lookup(now);
    return;
  }
  candidate_.clear();
  candidate_.address = address_of(rec);
  candidate_.uri = candidate_.address.to_string();
  candidate_.record = rec;
  if (rec.epoch > epoch_seen_) {
    candidate_.channel = take_standby(candidate_.uri, &candidate_.domain);
    if (candidate_.channel) {
      // The lookup names the partner we already stand by at, with a newer epoch: it may have
      // taken over. A UDP answer is only a hint: the partner itself must say (prove, with a
      // pinned key) that it is active, at which epoch, before we adopt either.
      candidate_.standby = true;
      candidate_.min_epoch = epoch_seen_ + 1;
      if (ask_proof(now + options_.tuning.connect_timeout_ms * 1'000'000)) {
        state_ = FailoverState::kProving;
        return;
      }
      candidate_.drop_channel();
    }
  }
  connect_to_answer(now);
}

void Session::connect_to_answer(std::int64_t now) {
  candidate_.min_epoch = epoch_seen_;
  state_ = FailoverState::kConnecting;
  start_connect(candidate_.address, now);
}

// --- Connect and proof, for either phase ---

void Session::start_connect(const transport::Address& address, std::int64_t now) {
  run_.connect_started_ns = now;
  connector_.start(address, client_hello(epoch_seen_, options_.name),
                   static_cast<int>(options_.tuning.connect_timeout_ms));
}

void Session::on_connected(ConnectOutcome outcome, std::int64_t now) {
  // The time this session waited for the connect (its other requests went on meanwhile).
  run_.timings.connect_ms += ms_between(run_.connect_started_ns, now);
  bool partner = state_ == FailoverState::kPartnerConnecting;
  std::uint64_t epoch = 0;
  bool claims = outcome.channel && verify_server_hello(outcome.channel->peer_hello_app(),
                                                       options_.name, candidate_.min_epoch, &epoch);
  if (claims) {
    candidate_.domain = std::move(outcome.domain);
    candidate_.channel = std::move(outcome.channel);
    if (!options_.server_key) {
      // No key pinned: the hello is trusted (not recommended, see SessionOptions::server_key).
      if (partner) run_.timings.skipped_lookup = true;
      resume_on(epoch);
      return;
    }
    // The hello is a claim; the proof is the server's signature over our nonce, name and epoch.
    if (ask_proof(now + options_.tuning.connect_timeout_ms * 1'000'000)) {
      state_ = partner ? FailoverState::kPartnerProving : FailoverState::kProving;
      return;
    }
    candidate_.drop_channel();
  }
  // Refused, unreachable, or not the active for this name.
  if (partner) {
    after_partner_attempt(now);
  } else {
    enter_lookup(now);  // look again
  }
}

bool Session::ask_proof(std::int64_t until_ns) {
  // With a pinned service key the server proves its name and epoch (failover/server_proof.hpp);
  // without one, it only states its epoch.
  std::array<std::byte, kRequestHeaderBytes + 1 + kProofNonceBytes> control{};
  encode_request_header({client_id_, kControlSeq}, control.data());
  std::span<const std::byte> request(control.data(), kRequestHeaderBytes + 1);
  proof_.sync = transport::SyncCall{};
  proof_.sync.out = proof_.answer;
  proof_.until_ns = until_ns;
  if (options_.server_key) {
    proof_.nonce = fresh_proof_nonce();
    control[kRequestHeaderBytes] = kControlProve;
    std::memcpy(control.data() + kRequestHeaderBytes + 1, proof_.nonce.data(), proof_.nonce.size());
    request = control;
  } else {
    control[kRequestHeaderBytes] = kControlEpoch;
  }
  if (!candidate_.channel->healthy()) return false;
  return candidate_.channel->call_async(request, transport::SyncCall::on_response, &proof_.sync)
      .is_ok();
}

std::optional<std::uint64_t> Session::proof_result() {
  if (!proof_.sync.done) return std::nullopt;
  std::uint32_t app_status = 0;
  auto n = proof_.sync.result(&app_status);
  if (!n) return std::nullopt;
  if (app_status == kAppStatusNotActive) return 0;
  if (app_status != 0) return std::nullopt;
  if (options_.server_key) {
    auto proven = verify_proof({proof_.answer.data(), n.value()}, *options_.server_key,
                               options_.name, proof_.nonce);
    if (!proven) {
      ++proofs_failed_;
      VIADUCT_LOG(kWarn, "session " << options_.name << ": " << candidate_.uri
                                    << " answered for the name but failed its proof ("
                                    << proven.status().to_string() << "): not adopted");
      return std::nullopt;  // not a server of this name: never adopted
    }
    return proven.value();
  }
  if (n.value() != 8) return std::nullopt;
  return transport::load_le<std::uint64_t>(proof_.answer.data());
}

void Session::on_proof(std::optional<std::uint64_t> epoch, std::int64_t now) {
  bool partner = state_ == FailoverState::kPartnerProving;
  bool proven = epoch && epoch.value() != 0 && epoch.value() >= candidate_.min_epoch;
  if (proven) {
    run_.timings.used_standby = candidate_.standby;
    if (partner) run_.timings.skipped_lookup = true;  // the partner took over: no lookup
    resume_on(epoch.value());
    return;
  }
  if (partner) {
    if (candidate_.standby && epoch) {
      // The partner answers but has not taken over yet: keep the standby, ask again shortly.
      after_partner_attempt(now);
      return;
    }
    candidate_.drop_channel();  // unreachable, or could not prove itself
    after_partner_attempt(now);
    return;
  }
  if (candidate_.standby) {
    // The standby could not prove it took over: connect afresh where the answer pointed.
    candidate_.drop_channel();
    connect_to_answer(now);
    return;
  }
  enter_lookup(now);  // refused, unreachable, or not the active for this name: look again
}

void Session::idle_wait() {
  // Only call() gets here, with nothing else to do on this thread: sleep as the blocking
  // failover did, so that on a small machine the partner taking over gets the core.
  std::int64_t now = steady_now_ns();
  if (state_ == FailoverState::kPartnerWaiting) {
    std::int64_t wake = std::min(run_.next_attempt_ns, run_.partner_give_up_ns);
    if (wake > now) std::this_thread::sleep_for(std::chrono::nanoseconds(wake - now));
  } else if (state_ == FailoverState::kConnecting || state_ == FailoverState::kPartnerConnecting) {
    // The helper thread connects: leave it the CPU until it is done (the next poll() takes the
    // result), waking at least every millisecond for the requests' deadlines.
    connector_.wait(1'000'000);
  } else if (state_ == FailoverState::kLookingUp && lookup_socket_) {
    std::int64_t wait_ns = std::max<std::int64_t>(0, run_.next_lookup_send_ns - now);
    pollfd p{lookup_socket_->fd(), POLLIN, 0};
    timespec ts{static_cast<time_t>(wait_ns / 1'000'000'000),
                static_cast<long>(wait_ns % 1'000'000'000)};
    (void)ppoll(&p, 1, &ts, nullptr);
  }
}

Result<std::size_t> Session::call(std::span<const std::byte> request, std::span<std::byte> response,
                                  std::uint32_t* app_status) {
  transport::SyncCall sync;
  sync.out = response;
  VIADUCT_RETURN_IF_ERROR(call_async(request, transport::SyncCall::on_response, &sync));
  PoliteSpin spin;
  while (!sync.done) {
    std::size_t n = poll();
    if (n == 0 && !sync.done) idle_wait();
    spin.after_poll(n);
  }
  return sync.result(app_status);
}

}  // namespace viaduct::failover
