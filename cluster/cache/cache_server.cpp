#include "cluster/cache/cache_server.hpp"

#include <chrono>
#include <cstring>
#include <thread>

#include "cluster/cache/cache_client.hpp"  // cache_connect_timeout_ms
#include "failover/background_connector.hpp"
#include "transport/clock.hpp"
#include "transport/log.hpp"

namespace viaduct::cluster::cache {

namespace tunables {
Tunable cache_max_bytes("cache", "cache_max_bytes", 256ll << 20, 1 << 20, 1ll << 40,
                        "memory a data server's cache of records may hold (values, keys and "
                        "bookkeeping); least recently used records go first");
Tunable cache_lease_ms(
    "cache", "cache_lease_ms", 100, 5, 60000,
    "how long a data server may serve from its cache after asking the master for a lease; the "
    "master marks a silent server offline only after the lease it granted ran out");
Tunable cache_forward_timeout_ms("cache", "cache_forward_timeout_ms", 50, 1, 60000,
                                 "a request forwarded to its owner with no answer for this long "
                                 "counts as a failed forward (the owner is reported)");
Tunable cache_max_held_requests("cache", "cache_max_held_requests", 4096, 16, 1 << 20,
                                "requests a data server holds at once (forwarded, or waiting "
                                "for the master's verdict); beyond, clients are told kBusy");
Tunable cache_server_busy_poll("cache", "cache_server_busy_poll", 0, 0, 1,
                               "1: data servers spin on their connections (lowest latency, one "
                               "core each); 0: they sleep in epoll when idle");
Tunable cache_stats_interval_ms("cache", "cache_stats_interval_ms", 0, 0, 3600000,
                                "a data server prints a `stats` notice (its counters and "
                                "database queries) this often; 0: never. For the benches, "
                                "which take differences between two such lines");
Tunable cache_debug_write_delay_ms(
    "cache", "cache_debug_write_delay_ms", 0, 0, 60000,
    "fault injection, for tests: a data server sleeps this long between deciding to serve a "
    "write (its lease checked) and sending it to the database, as if frozen there");
}  // namespace tunables

namespace {
constexpr std::int64_t kMs = 1'000'000;
}

// A connection to another data server, for forwarding. It is made on the connector's thread:
// a connect to a frozen owner waits out its whole timeout, and the serving loop must not (every
// other client of this server would wait with it).
struct CacheServer::Peer {
  failover::BackgroundConnector connector;    // declared first: destroyed last
  std::unique_ptr<transport::Domain> domain;  // the channel's, handed over by the connector
  std::unique_ptr<transport::Channel> channel;
  std::int64_t retry_after_ns = 0;  // a connect failed: not again before this
  bool connecting = false;
  bool broken = false;
};

// A request this server holds: forwarded and awaiting the answer, or waiting for a verdict.
struct CacheServer::Slot {
  enum class State : std::uint8_t { kFree, kForwarding, kWaiting };
  State state = State::kFree;
  CacheServer* server = nullptr;
  transport::Channel* client = nullptr;  // nullptr once that channel is gone
  std::uint64_t request_id = 0;
  std::uint64_t call_id = 0;  // the forwarded call's request id
  std::uint32_t target = 0;
  bool awaiting_connect = false;  // forwarding: sent once the connection to `target` is up
  std::int64_t since_ns = 0;
  std::vector<std::byte> bytes;  // the request, copied
};

class CacheServer::Dispatcher : public transport::RequestHandler {
 public:
  explicit Dispatcher(CacheServer* server) : server_(server) {}
  void on_request(transport::Channel& channel, const transport::IncomingRequest& r) override {
    server_->handle(channel, r);
  }

 private:
  CacheServer* server_;
};

Result<std::unique_ptr<CacheServer>> CacheServer::start(const CacheServerConfig& config) {
  if (config.cluster_key == nullptr) {
    return Status(Code::kInvalidArgument, "a data server needs the cluster key");
  }
  if (auto s = config.map.check(); !s.is_ok()) return s;
  const MapServer* self = config.map.find(config.id);
  if (self == nullptr) {
    return Status(Code::kInvalidArgument, "no data server '" + config.id + "' in the map");
  }
  std::unique_ptr<CacheServer> s(new CacheServer());
  s->config_ = config;
  s->map_ = config.map;
  s->self_ = static_cast<std::uint32_t>(self - config.map.servers.data());
  s->own_generation_ = self->generation;
  s->master_key_ = config.cluster_key->service_public_key(master_key_name(config.master_id));
  auto master = failover::UdpEndpoint::parse(config.master_control);
  if (!master) return master.status().with_context("master control address");
  s->master_ = master.value();
  auto store = open_record_store(config.database);
  if (!store) return store.status().with_context("database");
  s->store_ = std::move(store.value());
  s->cache_ =
      std::make_unique<RecordCache>(static_cast<std::size_t>(tunables::cache_max_bytes.get()));
  auto control_at = failover::UdpEndpoint::parse(self->control);
  if (!control_at) return control_at.status().with_context("control address");
  auto control = failover::UdpSocket::bind(control_at.value());
  if (!control) return control.status().with_context("control address " + self->control);
  s->control_ = std::move(control.value());
  auto listen = transport::Address::parse(self->listen);
  if (!listen) return listen.status();
  auto domain = transport::Domain::open(listen.value());
  if (!domain) return domain.status();
  s->domain_ = std::move(domain.value());
  s->dispatcher_ = std::make_unique<Dispatcher>(s.get());
  transport::ChannelServerOptions options;
  options.busy_poll = tunables::cache_server_busy_poll.get() != 0;
  // The channels too: a busy-polling channel has no wait object, and a blocking server would
  // then find its requests only when its round times out.
  options.channel.busy_poll = options.busy_poll;
  options.before_destroy = [raw = s.get()](const transport::Channel& gone) {
    for (auto& slot : raw->slots_) {
      if (slot.client == &gone) slot.client = nullptr;
    }
  };
  auto server = transport::ChannelServer::listen(*s->domain_, listen.value(), s->dispatcher_.get(),
                                                 std::move(options));
  if (!server) return server.status();
  s->server_ = std::move(server.value());
  s->server_->add_wake_fd(s->control_.fd());
  s->peers_.resize(s->map_.servers.size());
  s->reported_ns_.assign(s->map_.servers.size(), 0);
  s->serving_for_.assign(s->map_.servers.size(), false);
  auto held = static_cast<std::size_t>(tunables::cache_max_held_requests.get());
  s->slots_.resize(held);
  for (std::size_t i = held; i-- > 0;) {
    s->slots_[i].server = s.get();
    s->free_slots_.push_back(static_cast<std::uint32_t>(i));
  }
  s->tend_lease(steady_now_ns());
  (void)s->raise_fences(steady_now_ns());
  return s;
}

CacheServer::~CacheServer() = default;

std::string CacheServer::address() const {
  return server_->address().to_string();
}

bool CacheServer::lease_valid() const {
  return steady_now_ns() < lease_until_ns_;
}

void CacheServer::notice(const std::string& text) {
  VIADUCT_LOG(kInfo, "cache-server " << config_.id << ": " << text);
  if (on_notice) on_notice(text);
}

void CacheServer::print_stats(std::int64_t now) {
  std::int64_t interval = tunables::cache_stats_interval_ms.get();
  if (interval == 0 || now < next_stats_ns_) return;
  next_stats_ns_ = now + interval * kMs;
  notice("stats requests " + std::to_string(stats_.requests) + " hits " +
         std::to_string(stats_.hits) + " misses " + std::to_string(stats_.misses) +
         " direct-reads " + std::to_string(stats_.direct_reads) + " temporarily " +
         std::to_string(stats_.served_temporarily) + " queries " +
         std::to_string(store_->queries()));
}

void CacheServer::run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) run_once(5);
}

std::size_t CacheServer::run_once(int timeout_ms) {
  bool busy = tunables::cache_server_busy_poll.get() != 0;
  bool forwarding = free_slots_.size() != slots_.size();
  std::size_t events = server_->run_once(busy ? 0 : (forwarding ? 1 : timeout_ms));
  for (auto& peer : peers_) {
    if (peer && peer->channel) events += peer->channel->poll();
  }
  std::int64_t now = steady_now_ns();
  poll_control(now);
  tend_connects(now);
  (void)raise_fences(now);
  tend_lease(now);
  recheck_waiting(now);
  print_stats(now);
  // Broken forwarding connections are destroyed here, never under their own callbacks.
  for (auto& peer : peers_) {
    if (peer && peer->channel && (peer->broken || !peer->channel->healthy())) {
      peer->channel.reset();
      peer->broken = false;
      peer->retry_after_ns = now + 5 * kMs;
    }
  }
  return events;
}

// --- data path ---------------------------------------------------------------------------------

void CacheServer::answer(transport::Channel& channel, std::uint64_t request_id, CacheStatus status,
                         std::uint64_t version, std::span<const std::byte> value) {
  encode_cache_answer(map_.epoch, version, value, answer_buf_);
  (void)channel.respond(request_id, answer_buf_, static_cast<std::uint32_t>(status));
}

void CacheServer::handle(transport::Channel& channel, const transport::IncomingRequest& incoming) {
  ++stats_.requests;
  auto decoded = decode_cache_request(incoming.payload);
  if (!decoded) {
    ++stats_.invalid;
    answer(channel, incoming.request_id, CacheStatus::kInvalid, 0,
           as_bytes(decoded.status().message()));
    return;
  }
  const CacheRequest& request = decoded.value();
  if (request.op == CacheOp::kPing) {
    std::byte serving{lease_valid() ? std::uint8_t{1} : std::uint8_t{0}};
    answer(channel, incoming.request_id, CacheStatus::kOk, 0, std::span(&serving, 1));
    return;
  }
  if (request.op == CacheOp::kProve) {
    failover::ProofNonce nonce;
    std::memcpy(nonce.data(), request.value.data(), nonce.size());
    std::array<std::byte, failover::kProofAnswerBytes> proof;
    config_.cluster_key->sign_proof(server_key_name(config_.id), nonce, map_.epoch, proof);
    answer(channel, incoming.request_id, CacheStatus::kOk, 0, proof);
    return;
  }
  const MapServer* owner = map_.owner_of(request.type);
  if (owner == nullptr) {
    ++stats_.invalid;
    answer(channel, incoming.request_id, CacheStatus::kUnknownType, 0,
           as_bytes("unknown type '" + std::string(request.type) + "'"));
    return;
  }
  auto owner_index = static_cast<std::uint32_t>(owner - map_.servers.data());
  std::uint32_t target = 0;
  switch (decide(*owner, &target)) {
    case Decision::kServe:
      serve(channel, incoming.request_id, request, owner_index, false);
      return;
    case Decision::kNotServing:
      ++stats_.not_serving;
      answer(channel, incoming.request_id, CacheStatus::kNotServing, 0, {});
      if (!lease_valid()) next_lease_ns_ = 0;  // ask the master now
      return;
    case Decision::kForward:
      break;
  }
  if ((request.flags & kCacheFlagForwarded) != 0) {
    // Forwarded to us by a server whose map differs from ours: one of us is behind. Never
    // forward twice (two servers with different maps could bounce a request for ever).
    ++stats_.not_serving;
    answer(channel, incoming.request_id, CacheStatus::kNotServing, 0, {});
    return;
  }
  if (free_slots_.empty()) {
    answer(channel, incoming.request_id, CacheStatus::kBusy, 0, as_bytes("too many held"));
    return;
  }
  std::uint32_t index = free_slots_.back();
  free_slots_.pop_back();
  Slot& slot = slots_[index];
  slot.client = &channel;
  slot.request_id = incoming.request_id;
  slot.since_ns = steady_now_ns();
  slot.bytes.assign(incoming.payload.begin(), incoming.payload.end());
  slot.bytes[2] |= std::byte{kCacheFlagForwarded};
  forward(index, target);
}

const MapServer* CacheServer::server_for(const MapServer& owner) const {
  if (owner.state == ServerState::kOnline) return &owner;
  if (owner.state == ServerState::kOffline) return map_.failover_for(owner);
  return nullptr;
}

CacheServer::Decision CacheServer::decide(const MapServer& owner, std::uint32_t* target) const {
  const MapServer* server = server_for(owner);
  if (server == nullptr) return Decision::kNotServing;  // returning, or the group is down
  *target = static_cast<std::uint32_t>(server - map_.servers.data());
  if (*target != self_) return Decision::kForward;
  return lease_valid() && fenced_epoch_ == map_.epoch ? Decision::kServe : Decision::kNotServing;
}

// Before this server serves anything at a map epoch: the fences of every type it serves at it
// raised to it, in the database. A fence above our epoch means a newer map gave the type to
// someone else: we ask the master for it (it comes with the lease) and serve nothing meanwhile.
bool CacheServer::raise_fences(std::int64_t now) {
  if (fenced_epoch_ == map_.epoch) return true;
  if (map_.epoch == 0) return false;  // the configured map: not the master's yet
  if (now < next_fence_ns_) return false;
  next_fence_ns_ = now + 10 * kMs;  // the next attempt, if this one fails
  for (const MapServer& owner : map_.servers) {
    if (server_for(owner) != &map_.servers[self_]) continue;
    for (const std::string& type : owner.types) {
      auto raised = store_->fence(type, map_.epoch);
      if (!raised) {
        notice("fences not raised (map " + std::to_string(map_.epoch) +
               "): " + raised.status().to_string());
        return false;
      }
      if (raised.value() != map_.epoch) {
        // The lease request shows the master the fence's epoch: a master restarted with a
        // clock that went back overtakes it (as it overtakes any member's epoch) instead of
        // leaving every server fenced out of its types. Otherwise the answer brings the newer
        // map.
        fence_seen_ = std::max(fence_seen_, raised.value());
        next_lease_ns_ = 0;
        if (fence_refused_noticed_ != map_.epoch) {
          fence_refused_noticed_ = map_.epoch;
          notice("fenced: type " + type + " belongs to a map newer than " +
                 std::to_string(map_.epoch) + "; serving nothing until we have it");
        }
        return false;
      }
    }
  }
  fenced_epoch_ = map_.epoch;
  return true;
}

void CacheServer::serve(transport::Channel& channel, std::uint64_t request_id,
                        const CacheRequest& request, std::uint32_t owner, bool direct_only) {
  if (owner != self_ && !direct_only) {
    ++stats_.served_temporarily;
    if (!serving_for_[owner]) {
      serving_for_[owner] = true;
      notice("temporary: serving the types of " + map_.servers[owner].id + " (offline), caching " +
             "them until it is back");
    }
  }
  if (request.op == CacheOp::kGet) {
    if (!direct_only) {
      if (const CachedRecord* hit = cache_->find(request.type, request.key)) {
        ++stats_.hits;
        answer(channel, request_id, hit->found ? CacheStatus::kOk : CacheStatus::kNotFound,
               hit->version, hit->value);
        return;
      }
      ++stats_.misses;
    }
    if (auto s = store_->get(request.type, request.key, record_); !s.is_ok()) {
      answer(channel, request_id, CacheStatus::kDatabase, 0, as_bytes(s.message()));
      return;
    }
    answer(channel, request_id, record_.found ? CacheStatus::kOk : CacheStatus::kNotFound,
           record_.version, record_.value);
    if (!direct_only) {
      cache_->store(request.type, request.key,
                    CachedRecord{record_.found, record_.version, record_.value, owner});
    }
    return;
  }
  std::optional<std::uint64_t> expected;
  if ((request.flags & kCacheFlagExpected) != 0) expected = request.expected_version;
  WriteTag tag{request.client_id, request.seq};
  if (std::int64_t delay = tunables::cache_debug_write_delay_ms.get(); delay > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
  }
  auto written = request.op == CacheOp::kPut
                     ? store_->put(request.type, request.key, request.value, expected, tag)
                     : store_->remove(request.type, request.key, expected, tag);
  if (!written) {
    // The statement failed; whether it committed is unknown to us: forget what we had.
    cache_->erase(request.type, request.key);
    answer(channel, request_id, CacheStatus::kDatabase, 0, as_bytes(written.status().message()));
    return;
  }
  const WriteResult& w = written.value();
  if (w.fenced) {
    // A newer map gave this type to another server, which raised its fence: nothing was
    // written, and what we cached of the owner's types may be old. The client re-routes.
    ++stats_.fenced_writes;
    std::size_t dropped = cache_->drop_owner(owner);
    fenced_epoch_ = kNotFenced;
    next_lease_ns_ = 0;
    notice("write fenced: type " + std::string(request.type) + " has a newer owner than map " +
           std::to_string(map_.epoch) + "; dropped " + std::to_string(dropped) + " cached records");
    answer(channel, request_id, CacheStatus::kNotServing, 0, {});
    return;
  }
  if (!w.applied) {
    cache_->erase(request.type, request.key);
    answer(channel, request_id, CacheStatus::kVersionMismatch, w.version, {});
    return;
  }
  if (direct_only) {
    cache_->erase(request.type, request.key);
  } else if (request.op == CacheOp::kPut) {
    cache_->store(
        request.type, request.key,
        CachedRecord{true, w.version,
                     std::vector<std::byte>(request.value.begin(), request.value.end()), owner});
  } else {
    cache_->store(request.type, request.key, CachedRecord{false, w.version, {}, owner});
  }
  answer(channel, request_id, CacheStatus::kOk, w.version, {});
}

// The peer's connection when it is up; otherwise a connect is started (unless one runs, or the
// last failed less than 5 ms ago) and nullptr returned.
CacheServer::Peer* CacheServer::connect_peer(std::uint32_t target) {
  auto& peer = peers_[target];
  if (!peer) peer = std::make_unique<Peer>();
  if (peer->channel && peer->channel->healthy() && !peer->broken) return peer.get();
  if (peer->connecting || steady_now_ns() < peer->retry_after_ns) return nullptr;
  auto address = transport::Address::parse(map_.servers[target].listen);
  if (!address) return nullptr;
  // The connect may take longer than a forward may wait (rdma_cm on a slow host): the requests
  // waiting for it fail at their timeout, and a later forward takes the connection.
  peer->connector.start(address.value(), {},
                        static_cast<int>(tunables::cache_connect_timeout_ms.get()));
  peer->connecting = true;
  return nullptr;
}

// Connects that finished: the requests waiting for them are sent, or count as failed forwards.
void CacheServer::tend_connects(std::int64_t now) {
  for (std::uint32_t target = 0; target < peers_.size(); ++target) {
    Peer* peer = peers_[target].get();
    if (peer == nullptr || !peer->connecting) continue;
    auto outcome = peer->connector.take();
    if (!outcome) continue;
    peer->connecting = false;
    bool up = outcome->status.is_ok() && outcome->channel != nullptr;
    if (up) {
      peer->channel.reset();  // before its Domain goes
      if (peer->domain) peer->connector.retire(std::move(peer->domain));
      peer->domain = std::move(outcome->domain);
      peer->channel = std::move(outcome->channel);
      peer->broken = false;
    } else {
      peer->retry_after_ns = now + 5 * kMs;
    }
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      Slot& slot = slots_[i];
      if (slot.state != Slot::State::kForwarding || !slot.awaiting_connect ||
          slot.target != target) {
        continue;
      }
      slot.awaiting_connect = false;
      if (up) {
        send_forward(i, *peer);
      } else {
        forward_failed(i);
      }
    }
  }
}

void CacheServer::forward(std::uint32_t index, std::uint32_t target) {
  Slot& slot = slots_[index];
  slot.target = target;
  slot.state = Slot::State::kForwarding;
  slot.since_ns = steady_now_ns();
  slot.call_id = 0;
  Peer* peer = connect_peer(target);
  if (peer != nullptr) {
    send_forward(index, *peer);
  } else if (peers_[target] && peers_[target]->connecting) {
    slot.awaiting_connect = true;  // the forward timeout still counts from now
  } else {
    forward_failed(index);
  }
}

void CacheServer::send_forward(std::uint32_t index, Peer& peer) {
  Slot& slot = slots_[index];
  ++stats_.forwarded;
  auto sent =
      peer.channel->call_async(slot.bytes, &CacheServer::on_forward_answer, &slot, &slot.call_id);
  if (!sent.is_ok()) forward_failed(index);
}

void CacheServer::on_forward_answer(void* user, const transport::Response& response) {
  auto* slot = static_cast<Slot*>(user);
  CacheServer* self = slot->server;
  auto index = static_cast<std::uint32_t>(slot - self->slots_.data());
  if (slot->state != Slot::State::kForwarding || slot->call_id != response.request_id) return;
  if (!response.status.is_ok()) {
    if (self->peers_[slot->target]) self->peers_[slot->target]->broken = true;
    self->forward_failed(index);
    return;
  }
  if (slot->client != nullptr) {
    (void)slot->client->respond(slot->request_id, response.payload, response.app_status);
  }
  self->release(index);
}

void CacheServer::forward_failed(std::uint32_t index) {
  Slot& slot = slots_[index];
  ++stats_.forward_failures;
  report(slot.target);
  auto request = decode_cache_request(slot.bytes);
  if (request && request.value().op == CacheOp::kGet && slot.client != nullptr) {
    // The database holds every acknowledged write: a read from it is current. Not cached: the
    // owner may be alive and caching this type.
    ++stats_.direct_reads;
    serve(*slot.client, slot.request_id, request.value(),
          static_cast<std::uint32_t>(map_.owner_of(request.value().type) - map_.servers.data()),
          true);
    release(index);
    return;
  }
  ++stats_.held;
  slot.state = Slot::State::kWaiting;  // until the master's verdict changes the map
}

void CacheServer::release(std::uint32_t index) {
  Slot& slot = slots_[index];
  slot.state = Slot::State::kFree;
  slot.client = nullptr;
  slot.call_id = 0;
  slot.awaiting_connect = false;
  free_slots_.push_back(index);
}

void CacheServer::answer_slot(std::uint32_t index, CacheStatus status, std::string_view message) {
  Slot& slot = slots_[index];
  if (slot.client != nullptr) answer(*slot.client, slot.request_id, status, 0, as_bytes(message));
  release(index);
}

// Forwards that took too long count as failed; waiting writes are decided again when the map
// changed, and given up (kNotServing: the client retries) after a lease's worth of waiting.
void CacheServer::recheck_waiting(std::int64_t now) {
  if (free_slots_.size() == slots_.size()) return;  // nothing held: the usual round
  std::int64_t forward_timeout = tunables::cache_forward_timeout_ms.get() * kMs;
  std::int64_t wait_limit = 4 * tunables::cache_lease_ms.get() * kMs + forward_timeout;
  for (std::uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (slot.state == Slot::State::kForwarding && now - slot.since_ns > forward_timeout) {
      if (peers_[slot.target] && !slot.awaiting_connect) peers_[slot.target]->broken = true;
      slot.awaiting_connect = false;
      slot.call_id = 0;  // its answer, if it still comes, is dropped
      forward_failed(i);
    } else if (slot.state == Slot::State::kWaiting) {
      if (slot.client == nullptr) {
        release(i);
        continue;
      }
      auto request = decode_cache_request(slot.bytes);
      const MapServer* owner = request ? map_.owner_of(request.value().type) : nullptr;
      if (owner == nullptr) {
        answer_slot(i, CacheStatus::kInvalid, "request no longer valid");
        continue;
      }
      std::uint32_t target = 0;
      Decision d = decide(*owner, &target);
      if (d == Decision::kServe) {
        serve(*slot.client, slot.request_id, request.value(),
              static_cast<std::uint32_t>(owner - map_.servers.data()), false);
        release(i);
      } else if (d == Decision::kForward && target != slot.target) {
        forward(i, target);
      } else if (now - slot.since_ns > wait_limit) {
        ++stats_.not_serving;
        answer_slot(i, CacheStatus::kNotServing, "");
      }
    }
  }
}

void CacheServer::report(std::uint32_t suspect) {
  std::int64_t now = steady_now_ns();
  if (now - reported_ns_[suspect] < 10 * kMs) return;  // one report per suspect per 10 ms
  reported_ns_[suspect] = now;
  ++stats_.reports;
  ControlMessage m;
  m.kind = ControlKind::kReport;
  m.nonce = fresh_control_nonce();
  m.epoch = map_.epoch;
  m.subject = map_.servers[suspect].id;
  m.sender = config_.id;
  send_control(m, master_);
  notice("reported " + m.subject + " (forwarding failed)");
}

// --- control plane -----------------------------------------------------------------------------

void CacheServer::send_control(const ControlMessage& m, const failover::UdpEndpoint& to) {
  if (encode_control(m, *config_.cluster_key, datagram_).is_ok()) {
    (void)control_.send_to(datagram_, to);
  }
}

void CacheServer::poll_control(std::int64_t now) {
  std::array<std::byte, kMaxControlDatagramBytes> buffer;
  for (int i = 0; i < 64; ++i) {
    failover::UdpEndpoint from;
    auto got = control_.receive(buffer, &from);
    if (!got) {
      if (got.status().code() == Code::kWouldBlock) return;
      continue;  // ICMP errors from earlier sends: nothing to do
    }
    if (got.value() > buffer.size()) {
      ++stats_.bad_datagrams;
      continue;
    }
    auto m = decode_control(std::span(buffer.data(), got.value()), *config_.cluster_key);
    if (!m) {
      ++stats_.bad_datagrams;
      continue;
    }
    on_control(m.value(), from, now);
  }
}

void CacheServer::on_control(const ControlMessage& m, const failover::UdpEndpoint& from,
                             std::int64_t now) {
  switch (m.kind) {
    case ControlKind::kProbe: {
      ControlMessage ack;
      ack.kind = ControlKind::kProbeAck;
      ack.nonce = m.nonce;
      ack.epoch = map_.epoch;
      ack.subject = config_.id;
      ack.sender = config_.id;
      send_control(ack, from);
      return;
    }
    case ControlKind::kLeaseGrant: {
      if (m.nonce != lease_nonce_ || m.body.size() < 4) return;  // not the answer we wait for
      lease_nonce_ = 0;
      if (m.body.size() > 4) {
        auto map = decode_signed_map(std::span(m.body).subspan(4), master_key_);
        if (map && map.value().epoch > map_.epoch) adopt_map(std::move(map.value()));
      }
      if (m.epoch != map_.epoch) return;  // our map is not the master's: no lease on it
      std::uint32_t lease_ms = transport::load_le<std::uint32_t>(m.body.data());
      lease_until_ns_ = lease_sent_ns_ + std::int64_t{lease_ms} * kMs;
      if (lease_lapsed_noticed_) {
        lease_lapsed_noticed_ = false;
        notice("lease held (map " + std::to_string(map_.epoch) + ")");
      }
      (void)now;
      return;
    }
    case ControlKind::kNotice: {
      auto map = decode_signed_map(m.body, master_key_);
      if (!map) {
        ++stats_.bad_datagrams;
        return;
      }
      if (map.value().epoch > map_.epoch) adopt_map(std::move(map.value()));
      ControlMessage ack;
      ack.kind = ControlKind::kNoticeAck;
      ack.nonce = m.nonce;
      ack.epoch = map_.epoch;
      ack.sender = config_.id;
      send_control(ack, from);
      return;
    }
    default:
      ++stats_.bad_datagrams;  // nothing else is sent to a data server
      return;
  }
}

void CacheServer::tend_lease(std::int64_t now) {
  std::int64_t lease = tunables::cache_lease_ms.get() * kMs;
  if (now >= lease_until_ns_ && !lease_lapsed_noticed_) {
    lease_lapsed_noticed_ = true;
    notice("lease lapsed: serving nothing from the cache until the master answers");
  }
  if (now < next_lease_ns_) return;
  // Renew at a quarter of the lease: three renewals may be lost before it runs out.
  next_lease_ns_ = now + std::max<std::int64_t>(lease / 4, kMs);
  lease_nonce_ = fresh_control_nonce();
  lease_sent_ns_ = now;
  ControlMessage m;
  m.kind = ControlKind::kLease;
  m.nonce = lease_nonce_;
  m.epoch = map_.epoch;
  if (fence_seen_ > map_.epoch) {
    m.body.resize(8);
    transport::store_le<std::uint64_t>(m.body.data(), fence_seen_);
  }
  m.subject = config_.id;
  m.sender = config_.id;
  send_control(m, master_);
}

void CacheServer::adopt_map(ClusterMap map) {
  if (map.servers.size() != map_.servers.size()) {
    notice("map " + std::to_string(map.epoch) + " ignored: it lists other servers");
    return;
  }
  std::string changes;
  for (std::uint32_t i = 0; i < map.servers.size(); ++i) {
    const MapServer& before = map_.servers[i];
    const MapServer& after = map.servers[i];
    if (before.state != after.state) {
      changes += " " + after.id + " " + std::string(server_state_name(after.state));
    }
  }
  map_ = std::move(map);
  // What we cached for an owner we may no longer serve goes: its types are someone else's now.
  for (std::uint32_t i = 0; i < map_.servers.size(); ++i) {
    if (i == self_) continue;
    const MapServer& owner = map_.servers[i];
    bool ours =
        owner.state == ServerState::kOffline && map_.failover_for(owner) == &map_.servers[self_];
    if (!ours) {
      std::size_t dropped = cache_->drop_owner(i);
      stats_.dropped_temporary += dropped;
      if (serving_for_[i]) {
        serving_for_[i] = false;
        notice("temporary: stopped serving the types of " + owner.id + " (" +
               std::string(server_state_name(owner.state)) + "), dropped " +
               std::to_string(dropped) + " cached records");
      }
    }
  }
  // Marked offline since our cache of our own types was filled: others may have written them.
  const MapServer& self = map_.servers[self_];
  if (self.generation != own_generation_ || self.state != ServerState::kOnline) {
    std::size_t dropped = cache_->drop_owner(self_);
    if (self.generation != own_generation_) {
      notice("marked offline meanwhile (generation " + std::to_string(self.generation) +
             "): dropped " + std::to_string(dropped) + " cached records");
    }
    own_generation_ = self.generation;
  }
  notice("map " + std::to_string(map_.epoch) + ":" + (changes.empty() ? " no change" : changes));
  next_fence_ns_ = 0;
  (void)raise_fences(steady_now_ns());
}

}  // namespace viaduct::cluster::cache
