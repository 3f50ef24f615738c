#include "cluster/cache/cache_client.hpp"

#include <sodium.h>

#include <cstring>
#include <thread>

#include "failover/background_connector.hpp"
#include "transport/clock.hpp"
#include "transport/log.hpp"

namespace viaduct::cluster::cache {

namespace tunables {
Tunable cache_client_retries("cache", "cache_client_retries", 2, 0, 100,
                             "failed attempts at a server (on fresh connections) before the "
                             "client enters failover mode for it");
Tunable cache_failover_window_ms("cache", "cache_failover_window_ms", 1000, 1, 3600000,
                                 "how long a client in failover mode for a server sends its "
                                 "requests to the failover server before trying it again");
Tunable cache_client_attempt_timeout_ms("cache", "cache_client_attempt_timeout_ms", 50, 1, 60000,
                                        "a request with no answer for this long is a failed "
                                        "attempt (sent again, elsewhere if need be)");
Tunable cache_connect_timeout_ms("cache", "cache_connect_timeout_ms", 1000, 1, 60000,
                                 "a connect to a data server (a client's, or a server's to "
                                 "forward) runs on a helper thread and gives up after this long; "
                                 "a request waits for it only its own timeout, a later one takes "
                                 "the connection");
Tunable cache_client_deadline_ms("cache", "cache_client_deadline_ms", 10000, 10, 3600000,
                                 "a request no server could serve for this long fails");
}  // namespace tunables

namespace {
constexpr std::int64_t kMs = 1'000'000;
}

struct CacheClient::Conn {
  failover::BackgroundConnector connector;    // declared first: destroyed last
  std::unique_ptr<transport::Domain> domain;  // the channel's, handed over by the connector
  std::unique_ptr<transport::Channel> channel;
  std::string connecting_to;           // the address of the connect the connector runs ("": none)
  std::uint32_t failures = 0;          // consecutive failed attempts
  std::int64_t failover_until_ns = 0;  // in failover mode for this server until then (0: not)
  bool in_failover = false;
};

Result<std::unique_ptr<CacheClient>> CacheClient::open(const CacheClientOptions& options) {
  std::unique_ptr<CacheClient> c(new CacheClient());
  c->options_ = options;
  auto master = failover::UdpEndpoint::parse(options.master_control);
  if (!master) return master.status().with_context("master control address");
  c->master_ = master.value();
  // The wildcard, as the lookup client does: the master's address is this host's only when the
  // master runs here, and binding to another host's address fails (EADDRNOTAVAIL).
  auto local =
      failover::UdpEndpoint::from(c->master_.addr.ss_family == AF_INET6 ? "::" : "0.0.0.0", 0);
  if (!local) return local.status();
  auto socket = failover::UdpSocket::bind(local.value());
  if (!socket) return socket.status();
  c->socket_ = std::move(socket.value());
  randombytes_buf(&c->client_id_, sizeof(c->client_id_));
  c->answer_buf_.resize(kCacheAnswerHeaderBytes + kMaxValueBytes);
  std::int64_t deadline = steady_now_ns() + tunables::cache_client_deadline_ms.get() * kMs;
  Status last;
  while (steady_now_ns() < deadline) {
    last = c->fetch_map(100);
    if (last.is_ok()) break;
  }
  if (!last.is_ok()) return last.with_context("no cluster map from the master");
  return c;
}

CacheClient::~CacheClient() = default;

void CacheClient::emit(std::string_view what, std::uint32_t server) {
  // Both arms a string_view: with a std::string in one, the result would be a temporary copy.
  std::string_view id =
      server < map_.servers.size() ? std::string_view(map_.servers[server].id) : std::string_view();
  VIADUCT_LOG(kInfo, "cache client: " << what << " " << id);
  if (on_event) on_event(what, id);
}

bool CacheClient::in_failover_mode(std::string_view server) const {
  const MapServer* s = map_.find(server);
  if (s == nullptr) return false;
  auto i = static_cast<std::size_t>(s - map_.servers.data());
  return i < conns_.size() && conns_[i] && conns_[i]->in_failover;
}

// --- the map -----------------------------------------------------------------------------------

void CacheClient::take(const ControlMessage& m) {
  if (m.kind != ControlKind::kMap && m.kind != ControlKind::kNotice) return;
  auto map = decode_signed_map(m.body, options_.master_key);
  if (!map) {
    VIADUCT_LOG(kWarn, "cache client: map refused: " << map.status().message());
    return;
  }
  if (map.value().epoch <= map_.epoch && !map_.servers.empty()) {
    // The master's answer to our request says our map is current: stop asking.
    if (m.kind == ControlKind::kMap) map_stale_ = false;
    return;
  }
  if (!map_.servers.empty() && map.value().servers.size() != map_.servers.size()) return;
  map_ = std::move(map.value());
  conns_.resize(map_.servers.size());
  map_stale_ = false;
  emit("map " + std::to_string(map_.epoch), ~0u);
}

void CacheClient::poll_notices() {
  std::array<std::byte, kMaxControlDatagramBytes> buffer;
  for (int i = 0; i < 16; ++i) {
    failover::UdpEndpoint from;
    auto got = socket_.receive(buffer, &from);
    if (!got) {
      if (got.status().code() == Code::kWouldBlock) return;
      continue;
    }
    if (got.value() > buffer.size() || !from.same_as(master_)) continue;
    auto m = decode_control(std::span(buffer.data(), got.value()), options_.client_key);
    if (m) take(m.value());
  }
}

Status CacheClient::fetch_map(int timeout_ms) {
  ++stats_.map_fetches;
  ControlMessage m;
  m.kind = ControlKind::kMapRequest;
  m.flags = kFlagFromClient | kFlagWatch;
  m.nonce = fresh_control_nonce();
  m.sender = options_.name;
  if (auto s = encode_control(m, options_.client_key, datagram_); !s.is_ok()) return s;
  if (auto s = socket_.send_to(datagram_, master_); !s.is_ok()) return s;
  last_watch_ns_ = steady_now_ns();
  std::uint64_t before = map_.epoch;
  bool had = !map_.servers.empty();
  std::int64_t deadline = steady_now_ns() + std::int64_t{timeout_ms} * kMs;
  while (steady_now_ns() < deadline) {
    int left = static_cast<int>((deadline - steady_now_ns()) / kMs) + 1;
    if (!socket_.wait_readable(left)) break;
    poll_notices();
    if (!map_.servers.empty() && (!had || map_.epoch >= before)) {
      if (!map_stale_) return Status::ok();
    }
  }
  if (map_.servers.empty()) return Status(Code::kTimeout, "the master did not answer");
  return Status(Code::kTimeout,
                "the master did not answer; keeping map " + std::to_string(map_.epoch));
}

void CacheClient::report(std::uint32_t server, bool back) {
  ++stats_.reports;
  ControlMessage m;
  m.kind = ControlKind::kReport;
  m.flags = kFlagFromClient | (back ? kFlagBack : 0);
  m.nonce = fresh_control_nonce();
  m.epoch = map_.epoch;
  m.subject = map_.servers[server].id;
  m.sender = options_.name;
  if (encode_control(m, options_.client_key, datagram_).is_ok()) {
    (void)socket_.send_to(datagram_, master_);
  }
  emit(back ? "report-back" : "report", server);
}

// --- requests ----------------------------------------------------------------------------------

CacheClient::Conn* CacheClient::connect(std::uint32_t server, int timeout_ms) {
  auto& conn = conns_[server];
  if (!conn) conn = std::make_unique<Conn>();
  if (conn->channel && conn->channel->healthy()) return conn.get();
  conn->channel.reset();  // before its Domain goes
  if (conn->domain) conn->connector.retire(std::move(conn->domain));
  const MapServer& s = map_.servers[server];
  if (conn->connecting_to != s.listen) {  // none running, or one to an address the map dropped
    auto address = transport::Address::parse(s.listen);
    if (!address) return nullptr;
    conn->connector.start(address.value(), {},
                          static_cast<int>(tunables::cache_connect_timeout_ms.get()));
    conn->connecting_to = s.listen;
  }
  conn->connector.wait(std::int64_t{timeout_ms} * kMs);
  auto outcome = conn->connector.take();
  if (!outcome) return nullptr;  // still connecting: this attempt failed, the connect goes on
  conn->connecting_to.clear();
  if (!outcome->status.is_ok() || !outcome->channel) return nullptr;
  auto& channel = outcome->channel;
  // A channel that fails its proof is closed here, its Domain on the connector's thread.
  auto drop = [&]() -> Conn* {
    channel.reset();
    conn->connector.retire(std::move(outcome->domain));
    return nullptr;
  };
  // The server proves it is the one the map names: a signature by its key over our nonce.
  failover::ProofNonce nonce = failover::fresh_proof_nonce();
  CacheRequest prove;
  prove.op = CacheOp::kProve;
  prove.value = nonce;
  std::vector<std::byte> bytes;
  if (!encode_cache_request(prove, bytes).is_ok()) return drop();
  std::uint32_t app = 0;
  auto n = channel->call(bytes, answer_buf_, timeout_ms, &app);
  if (!n || app != 0) return drop();
  auto answer = decode_cache_answer(std::span(answer_buf_.data(), n.value()));
  if (!answer) return drop();
  auto proven = failover::verify_proof(answer.value().value, s.key, server_key_name(s.id), nonce);
  if (!proven) {
    VIADUCT_LOG(kWarn, "cache client: " << s.listen << " is not " << s.id << ": "
                                        << proven.status().message());
    return drop();
  }
  conn->domain = std::move(outcome->domain);
  conn->channel = std::move(channel);
  return conn.get();
}

CacheClient::Outcome CacheClient::attempt(std::uint32_t server, std::span<const std::byte> request,
                                          int timeout_ms) {
  Outcome out;
  Conn* conn = connect(server, timeout_ms);
  if (conn == nullptr) {
    out.transport = Status(Code::kRejected, "could not connect to " + map_.servers[server].id);
    return out;
  }
  std::uint32_t app = 0;
  auto n = conn->channel->call(request, answer_buf_, timeout_ms, &app);
  if (!n) {
    out.transport = n.status();
    conn->channel.reset();  // a late answer on it must not be taken for a later request's
    return out;
  }
  auto answer = decode_cache_answer(std::span(answer_buf_.data(), n.value()));
  if (!answer) {
    out.transport = answer.status();
    conn->channel.reset();
    return out;
  }
  out.status = static_cast<CacheStatus>(app);
  out.version = answer.value().record_version;
  out.value = answer.value().value;
  if (answer.value().map_epoch > map_.epoch) map_stale_ = true;
  conn->failures = 0;
  return out;
}

// Where a request for `owner`'s types goes now; nullopt: nowhere yet (wait for the map).
std::optional<std::uint32_t> CacheClient::route(const MapServer& owner, std::int64_t now) {
  auto index = static_cast<std::uint32_t>(&owner - map_.servers.data());
  auto& conn = conns_[index];
  if (conn && conn->in_failover && now >= conn->failover_until_ns) {
    // The window is over: is the owner back?
    CacheRequest ping;
    ping.op = CacheOp::kPing;
    std::vector<std::byte> bytes;
    (void)encode_cache_request(ping, bytes);
    Outcome o =
        attempt(index, bytes, static_cast<int>(tunables::cache_client_attempt_timeout_ms.get()));
    if (o.transport.is_ok() && owner.state == ServerState::kOnline) {
      conn->in_failover = false;
      ++stats_.failover_left;
      emit("failover-leave", index);
    } else {
      if (o.transport.is_ok()) report(index, true);
      conn->failover_until_ns = now + tunables::cache_failover_window_ms.get() * kMs;
    }
  }
  bool avoid = conn && conn->in_failover;
  if (owner.state == ServerState::kOnline && !avoid) return index;
  const MapServer* f = map_.failover_for(owner);
  if (f == nullptr) return std::nullopt;
  return static_cast<std::uint32_t>(f - map_.servers.data());
}

void CacheClient::fail_attempt(std::uint32_t server, std::uint32_t owner, std::int64_t now) {
  ++stats_.attempts_failed;
  auto& conn = conns_[server];
  if (!conn) conn = std::make_unique<Conn>();
  ++conn->failures;
  if (server == owner && !conn->in_failover &&
      conn->failures > static_cast<std::uint32_t>(tunables::cache_client_retries.get())) {
    conn->in_failover = true;
    conn->failures = 0;
    conn->failover_until_ns = now + tunables::cache_failover_window_ms.get() * kMs;
    ++stats_.failover_entered;
    emit("failover-enter", server);
    report(server, false);
  } else if (server != owner && conn->failures > 1) {
    report(server, false);  // the failover server fails too: the master should know
    map_stale_ = true;
  }
}

Result<CacheClient::Outcome> CacheClient::call(CacheRequest request) {
  ++stats_.calls;
  request.client_id = client_id_;
  if (request.is_write()) request.seq = ++seq_;
  std::int64_t start = steady_now_ns();
  std::int64_t deadline = start + tunables::cache_client_deadline_ms.get() * kMs;
  int timeout = static_cast<int>(tunables::cache_client_attempt_timeout_ms.get());
  Status last = Status(Code::kTimeout, "no server could serve the request");
  bool refreshed_for_type = false;
  for (int round = 0;; ++round) {
    std::int64_t now = steady_now_ns();
    if (now >= deadline) return last;
    poll_notices();
    if (map_stale_ || now - last_watch_ns_ > 5'000 * kMs) (void)fetch_map(timeout);
    const MapServer* owner = map_.owner_of(request.type);
    if (owner == nullptr) {
      if (!refreshed_for_type) {  // a type added since our map? Look once more.
        refreshed_for_type = true;
        map_stale_ = true;
        continue;
      }
      return Status(Code::kInvalidArgument,
                    "unknown type '" + std::string(request.type) + "': no server owns it");
    }
    auto owner_index = static_cast<std::uint32_t>(owner - map_.servers.data());
    auto target = route(*owner, now);
    if (!target) {
      map_stale_ = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    request.map_epoch = map_.epoch;
    if (auto s = encode_cache_request(request, request_buf_); !s.is_ok()) return s;
    Outcome o = attempt(*target, request_buf_, timeout);
    if (!o.transport.is_ok()) {
      last = o.transport;
      fail_attempt(*target, owner_index, steady_now_ns());
      continue;
    }
    switch (o.status) {
      case CacheStatus::kOk:
      case CacheStatus::kNotFound:
      case CacheStatus::kVersionMismatch:
        return o;
      case CacheStatus::kNotServing:
        ++stats_.not_serving;
        map_stale_ = true;
        last = Status(Code::kTimeout, "no server may serve the type now");
        if (round > 2) std::this_thread::sleep_for(std::chrono::microseconds(500));
        continue;
      case CacheStatus::kBusy:
      case CacheStatus::kDatabase:
        last =
            Status(Code::kResource,
                   std::string(cache_status_name(o.status)) + ": " +
                       std::string(reinterpret_cast<const char*>(o.value.data()), o.value.size()));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      case CacheStatus::kUnknownType:
      case CacheStatus::kInvalid:
        return Status(Code::kInvalidArgument,
                      std::string(reinterpret_cast<const char*>(o.value.data()), o.value.size()));
    }
    return Status(Code::kMalformed, "unknown answer status");
  }
}

Result<CacheRecord> CacheClient::get(std::string_view type, std::span<const std::byte> key) {
  CacheRequest r;
  r.op = CacheOp::kGet;
  r.type = type;
  r.key = key;
  auto o = call(r);
  if (!o) return o.status();
  CacheRecord record;
  record.found = o.value().status == CacheStatus::kOk;
  record.version = o.value().version;
  record.value.assign(o.value().value.begin(), o.value().value.end());
  return record;
}

Result<std::uint64_t> CacheClient::put(std::string_view type, std::span<const std::byte> key,
                                       std::span<const std::byte> value) {
  CacheRequest r;
  r.op = CacheOp::kPut;
  r.type = type;
  r.key = key;
  r.value = value;
  auto o = call(r);
  if (!o) return o.status();
  return o.value().version;
}

Result<WriteOutcome> CacheClient::put_if_version(std::string_view type,
                                                 std::span<const std::byte> key,
                                                 std::span<const std::byte> value,
                                                 std::uint64_t expected) {
  CacheRequest r;
  r.op = CacheOp::kPut;
  r.flags = kCacheFlagExpected;
  r.expected_version = expected;
  r.type = type;
  r.key = key;
  r.value = value;
  auto o = call(r);
  if (!o) return o.status();
  return WriteOutcome{o.value().status == CacheStatus::kOk, o.value().version};
}

Result<std::uint64_t> CacheClient::remove(std::string_view type, std::span<const std::byte> key) {
  CacheRequest r;
  r.op = CacheOp::kDelete;
  r.type = type;
  r.key = key;
  auto o = call(r);
  if (!o) return o.status();
  return o.value().version;
}

}  // namespace viaduct::cluster::cache
