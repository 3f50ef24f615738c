#include "cluster/cache/master.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "transport/clock.hpp"
#include "transport/frame.hpp"
#include "transport/log.hpp"

namespace viaduct::cluster::cache {

namespace tunables {
extern Tunable cache_lease_ms;
Tunable cache_verify_ms("cache", "cache_verify_ms", 30, 1, 60000,
                        "how long the master probes a reported server before its verdict: "
                        "silent for this long means offline (a refused probe decides at once)");
Tunable cache_verify_probe_interval_ms("cache", "cache_verify_probe_interval_ms", 5, 1, 10000,
                                       "the master's probes of a server under verification go "
                                       "out this often");
Tunable cache_recheck_min_ms("cache", "cache_recheck_min_ms", 20, 1, 600000,
                             "the first re-check of an offline server; then doubling, jittered");
Tunable cache_recheck_max_ms("cache", "cache_recheck_max_ms", 1000, 1, 3600000,
                             "the longest wait between re-checks of an offline server");
Tunable cache_max_offline_percent("cache", "cache_max_offline_percent", 50, 1, 100,
                                  "the cascade guard: no verdict takes more than this share of "
                                  "a failover group offline; further verdicts wait");
Tunable cache_notice_retry_ms("cache", "cache_notice_retry_ms", 5, 1, 10000,
                              "a map notice not acknowledged by a member is sent again after "
                              "this long");
Tunable cache_client_requests_per_s(
    "cache", "cache_client_requests_per_s", 1000, 1, 10'000'000,
    "datagrams from clients (reports, map requests) the master handles per second per source "
    "address; members are not limited");
Tunable cache_client_answer_bytes_per_s(
    "cache", "cache_client_answer_bytes_per_s", 1 << 20, 65536, 1'000'000'000,
    "bytes of answers (maps, acknowledgements) the master sends per second per client source "
    "address");
Tunable cache_client_global_answers_per_s(
    "cache", "cache_client_global_answers_per_s", 20000, 1, 10'000'000,
    "answers the master sends to clients per second over all sources: caps reflection by forged "
    "sources");
Tunable cache_client_global_answer_bytes_per_s(
    "cache", "cache_client_global_answer_bytes_per_s", 16 << 20, 65536, 1'000'000'000,
    "answer bytes the master sends to clients per second over all sources");
}  // namespace tunables

namespace {
constexpr std::int64_t kMs = 1'000'000;
constexpr std::size_t kMaxWatchers = 1024;
constexpr std::int64_t kWatchNs = 30'000 * kMs;  // a client renews its watch more often
constexpr std::int64_t kVerifiedQuietNs = 20 * kMs;

// A UDP socket connected to one server's control port: a dead process's port answers "port
// unreachable", which a connected socket reports as ECONNREFUSED on the next receive.
class ProbeSocket {
 public:
  ProbeSocket() = default;
  ~ProbeSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  ProbeSocket(ProbeSocket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ProbeSocket& operator=(ProbeSocket&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  Status open(const failover::UdpEndpoint& to) {
    fd_ = ::socket(to.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Status(Code::kResource, std::string("socket: ") + std::strerror(errno));
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&to.addr), to.len) != 0) {
      return Status(Code::kInvalidArgument, std::string("connect: ") + std::strerror(errno));
    }
    return Status::ok();
  }
  void send(std::span<const std::byte> bytes) const {
    (void)::send(fd_, bytes.data(), bytes.size(), 0);
  }
  // >0: a datagram; 0: nothing; -1: refused.
  ssize_t receive(std::span<std::byte> buffer) const {
    ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_TRUNC);
    if (n >= 0) return n == 0 ? 0 : n;
    return errno == ECONNREFUSED ? -1 : 0;
  }
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_ = -1;
};
}  // namespace

struct Master::Tracked {
  failover::UdpEndpoint control;
  ProbeSocket probe;
  bool verifying = false;
  bool rechecking = false;  // offline, a re-check probe out
  std::int64_t first_report_ns = 0;
  std::int64_t verify_deadline_ns = 0;
  std::int64_t next_probe_ns = 0;
  std::uint64_t probe_nonce = 0;
  std::int64_t offline_at_ns = 0;    // verdict given; marked once the lease ran out
  std::int64_t retry_verify_ns = 0;  // deferred by the cascade guard
  std::int64_t lease_end_ns = 0;     // the master's clock: when the lease it granted runs out
  std::int64_t verified_alive_ns = 0;
  std::int64_t next_recheck_ns = 0;
  std::int64_t recheck_backoff_ns = 0;
  std::uint64_t acked_epoch = 0;
  std::int64_t next_notice_ns = 0;
  std::uint64_t returning_epoch = 0;
  std::uint64_t offline_epoch = 0;  // the map that marked it offline, for "group notified"
  bool group_notified = true;
};

Result<std::unique_ptr<Master>> Master::start(const MasterConfig& config) {
  if (config.cluster_key == nullptr) return Status(Code::kInvalidArgument, "no cluster key");
  if (auto s = config.map.check(); !s.is_ok()) return s;
  std::unique_ptr<Master> m(new Master());
  m->config_ = config;
  m->client_key_ = config.cluster_key->derive("clients");
  m->map_ = config.map;
  // A restarted master must publish maps newer than its predecessor's, which it does not know:
  // its first epoch is the wall clock's milliseconds (and it jumps above any epoch a member
  // shows it). Epochs then grow by one per change, far slower than the clock.
  m->map_.epoch =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  // Leases granted by a predecessor may still run: grant none, and give no verdict, for one
  // lease, so that none of them is alive when this master's map starts to count.
  m->quiet_until_ns_ = steady_now_ns() + tunables::cache_lease_ms.get() * kMs;
  for (auto& s : m->map_.servers) {
    s.key = config.cluster_key->service_public_key(server_key_name(s.id));
  }
  auto at = failover::UdpEndpoint::parse(config.control);
  if (!at) return at.status().with_context("master control address");
  auto socket = failover::UdpSocket::bind(at.value());
  if (!socket) return socket.status().with_context("master control address " + config.control);
  m->socket_ = std::move(socket.value());
  m->tracked_.resize(m->map_.servers.size());
  for (std::size_t i = 0; i < m->map_.servers.size(); ++i) {
    auto control = failover::UdpEndpoint::parse(m->map_.servers[i].control);
    if (!control) return control.status().with_context("control of " + m->map_.servers[i].id);
    m->tracked_[i].control = control.value();
    if (auto s = m->tracked_[i].probe.open(control.value()); !s.is_ok()) return s;
  }
  m->signed_map_ = encode_signed_map(m->map_, *config.cluster_key, config.id);
  return m;
}

Master::~Master() = default;

failover::PublicKey Master::public_key() const {
  return config_.cluster_key->service_public_key(master_key_name(config_.id));
}

std::string Master::control_address() const {
  return socket_.local().to_string();
}

void Master::event(std::int64_t now, std::string what, std::uint32_t index, std::string detail) {
  MasterEvent e{now, std::move(what), index < map_.servers.size() ? map_.servers[index].id : "",
                std::move(detail)};
  VIADUCT_LOG(kInfo, "master: " << e.what << " " << e.server << " " << e.detail);
  if (on_event) on_event(e);
}

void Master::run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) run_once(1);
}

void Master::run_once(int timeout_ms) {
  // The set never changes after start: built once (the loop runs every millisecond).
  if (poll_fds_.empty()) {
    poll_fds_.push_back({socket_.fd(), POLLIN, 0});
    for (auto& t : tracked_) poll_fds_.push_back({t.probe.fd(), POLLIN, 0});
  }
  (void)::poll(poll_fds_.data(), poll_fds_.size(), timeout_ms);
  std::int64_t now = steady_now_ns();
  receive(now);
  poll_probe_sockets(now);
  tend(now);
}

void Master::send(const ControlMessage& m, const failover::UdpEndpoint& to, bool to_client) {
  if (!encode_control(m, to_client ? client_key_ : *config_.cluster_key, datagram_).is_ok()) {
    return;
  }
  // An answer to a client (a map: up to 48 KiB for a ~100-byte request) is paid from the
  // source's and the global byte budgets: the clients' key must not make the master an
  // amplifier aimed at whatever source address a datagram claims.
  if (to_client &&
      client_limiter_.admit_answer(to.addr, datagram_.size(), client_limits_, steady_now_ns()) !=
          LookupRateLimiter::Verdict::kAdmitted) {
    ++stats_.client_rate_limited;
    return;
  }
  (void)socket_.send_to(datagram_, to);
}

void Master::receive(std::int64_t now) {
  client_limits_.source_requests_per_s =
      static_cast<double>(tunables::cache_client_requests_per_s.get());
  client_limits_.source_answer_bytes_per_s =
      static_cast<double>(tunables::cache_client_answer_bytes_per_s.get());
  client_limits_.global_answers_per_s =
      static_cast<double>(tunables::cache_client_global_answers_per_s.get());
  client_limits_.global_answer_bytes_per_s =
      static_cast<double>(tunables::cache_client_global_answer_bytes_per_s.get());
  std::array<std::byte, kMaxControlDatagramBytes> buffer;
  for (int i = 0; i < 256; ++i) {
    failover::UdpEndpoint from;
    auto got = socket_.receive(buffer, &from);
    if (!got) {
      if (got.status().code() == Code::kWouldBlock) return;
      continue;
    }
    if (got.value() > buffer.size()) {
      ++stats_.reports_refused;
      continue;
    }
    std::span<const std::byte> d(buffer.data(), got.value());
    bool from_client = control_claims_client(d);
    auto m = decode_control(d, from_client ? client_key_ : *config_.cluster_key);
    if (!m) {
      ++stats_.reports_refused;
      VIADUCT_LOG(kDebug, "master: datagram from " << from.to_string()
                                                   << " refused: " << m.status().message());
      continue;
    }
    // Counted once the MAC checked out: a sender without the clients' key, forging a client's
    // source address, must not spend that client's allowance (its map answers would stop).
    if (from_client && client_limiter_.admit_request(from.addr, client_limits_, now) !=
                           LookupRateLimiter::Verdict::kAdmitted) {
      ++stats_.client_rate_limited;
      continue;
    }
    on_message(m.value(), from_client, from, now);
  }
}

void Master::on_message(const ControlMessage& m, bool from_client,
                        const failover::UdpEndpoint& from, std::int64_t now) {
  const MapServer* subject = map_.find(m.subject);
  auto index = subject ? static_cast<std::uint32_t>(subject - map_.servers.data()) : 0u;
  if (now < quiet_until_ns_ && m.kind != ControlKind::kMapRequest) return;  // just started
  // A member on a newer map than ours (we restarted since): ours must overtake it.
  if (!from_client && m.epoch > map_.epoch &&
      (m.kind == ControlKind::kLease || m.kind == ControlKind::kNoticeAck)) {
    map_.epoch = m.epoch;
    publish(now);
  }
  switch (m.kind) {
    case ControlKind::kReport: {
      if (subject == nullptr) {
        ++stats_.reports_refused;
        return;
      }
      ++stats_.reports;
      ControlMessage ack;
      ack.kind = ControlKind::kReportAck;
      ack.nonce = m.nonce;
      ack.epoch = map_.epoch;
      ack.subject = m.subject;
      ack.sender = config_.id;
      send(ack, from, from_client);
      Tracked& t = tracked_[index];
      if ((m.flags & kFlagBack) != 0) {
        if (subject->state == ServerState::kOffline && !t.rechecking) {
          event(now, "report-back", index, "from " + m.sender);
          t.next_recheck_ns = now;  // re-check now
        }
        return;
      }
      if (subject->state != ServerState::kOnline || t.verifying || t.offline_at_ns != 0) return;
      if (now - t.verified_alive_ns < kVerifiedQuietNs || now < t.retry_verify_ns) return;
      event(now, "report", index, "from " + m.sender);
      start_verification(index, now, m.sender);
      return;
    }
    case ControlKind::kLease: {
      if (from_client || subject == nullptr) {
        ++stats_.reports_refused;
        return;
      }
      ++stats_.leases;
      // A database fence above our epoch (a member's report, authenticated): maps from before
      // we started, with a clock that went back since. Ours must overtake it, or no server
      // could write those types again.
      if (m.body.size() == 8) {
        std::uint64_t fence = transport::load_le<std::uint64_t>(m.body.data());
        if (fence >= map_.epoch) {
          map_.epoch = fence;
          publish(now);  // one above it
        }
      }
      Tracked& t = tracked_[index];
      std::int64_t lease = tunables::cache_lease_ms.get();
      // Counted from now, which is after the server asked: the master's idea of the lease's end
      // is never earlier than the server's.
      t.lease_end_ns = now + lease * kMs;
      t.acked_epoch = std::max(t.acked_epoch, m.epoch);
      // An offline server asking for a lease is running again (restarted, or woken): check it
      // now rather than at the next re-check of the backoff.
      if (subject->state == ServerState::kOffline && t.next_recheck_ns > now) {
        t.next_recheck_ns = now;
      }
      ControlMessage grant;
      grant.kind = ControlKind::kLeaseGrant;
      grant.nonce = m.nonce;
      grant.epoch = map_.epoch;
      grant.subject = m.subject;
      grant.sender = config_.id;
      grant.body.resize(4);
      transport::store_le<std::uint32_t>(grant.body.data(), static_cast<std::uint32_t>(lease));
      if (m.epoch != map_.epoch) {
        grant.body.insert(grant.body.end(), signed_map_.begin(), signed_map_.end());
      }
      send(grant, from, false);
      return;
    }
    case ControlKind::kNoticeAck: {
      const MapServer* sender = map_.find(m.sender);
      if (from_client || sender == nullptr) return;
      Tracked& t = tracked_[static_cast<std::size_t>(sender - map_.servers.data())];
      t.acked_epoch = std::max(t.acked_epoch, m.epoch);
      return;
    }
    case ControlKind::kMapRequest: {
      ++stats_.map_requests;
      ControlMessage reply;
      reply.kind = ControlKind::kMap;
      reply.nonce = m.nonce;
      reply.epoch = map_.epoch;
      reply.sender = config_.id;
      reply.body = signed_map_;
      send(reply, from, from_client);
      if ((m.flags & kFlagWatch) != 0) {
        auto it = std::find_if(watchers_.begin(), watchers_.end(),
                               [&](const Watcher& w) { return w.at.same_as(from); });
        if (it != watchers_.end()) {
          it->until_ns = now + kWatchNs;
        } else {
          std::erase_if(watchers_, [now](const Watcher& w) { return w.until_ns < now; });
          if (watchers_.size() < kMaxWatchers) watchers_.push_back({from, now + kWatchNs});
        }
      }
      return;
    }
    default:
      ++stats_.reports_refused;  // answers the master never asked for
      return;
  }
}

void Master::start_verification(std::uint32_t index, std::int64_t now, const std::string& why) {
  Tracked& t = tracked_[index];
  ++stats_.verifications;
  t.verifying = true;
  t.first_report_ns = now;
  t.verify_deadline_ns = now + tunables::cache_verify_ms.get() * kMs;
  (void)why;
  probe(index, now);
}

void Master::probe(std::uint32_t index, std::int64_t now) {
  Tracked& t = tracked_[index];
  t.probe_nonce = fresh_control_nonce();
  t.next_probe_ns = now + tunables::cache_verify_probe_interval_ms.get() * kMs;
  ControlMessage m;
  m.kind = ControlKind::kProbe;
  m.nonce = t.probe_nonce;
  m.epoch = map_.epoch;
  m.subject = map_.servers[index].id;
  m.sender = config_.id;
  if (encode_control(m, *config_.cluster_key, datagram_).is_ok()) t.probe.send(datagram_);
}

void Master::poll_probe_sockets(std::int64_t now) {
  std::array<std::byte, 4096> buffer;
  for (std::uint32_t i = 0; i < tracked_.size(); ++i) {
    Tracked& t = tracked_[i];
    for (int k = 0; k < 16; ++k) {
      ssize_t n = t.probe.receive(buffer);
      if (n == 0) break;
      if (n < 0) {
        // Port unreachable: the server's process is gone.
        if (t.verifying) verdict_offline(i, now, "refused");
        continue;
      }
      if (static_cast<std::size_t>(n) > buffer.size()) continue;
      auto m = decode_control(std::span(buffer.data(), static_cast<std::size_t>(n)),
                              *config_.cluster_key);
      if (!m || m.value().kind != ControlKind::kProbeAck || m.value().nonce != t.probe_nonce ||
          t.probe_nonce == 0) {
        continue;
      }
      t.probe_nonce = 0;
      t.acked_epoch = std::max(t.acked_epoch, m.value().epoch);
      alive(i, now);
    }
  }
}

void Master::alive(std::uint32_t index, std::int64_t now) {
  Tracked& t = tracked_[index];
  MapServer& s = map_.servers[index];
  if (t.verifying || t.offline_at_ns != 0) {
    ++stats_.verified_alive;
    event(now, "verified-alive", index,
          "in " + std::to_string((now - t.first_report_ns) / 1000) + " us");
    t.verifying = false;
    t.offline_at_ns = 0;
    t.verified_alive_ns = now;
    return;
  }
  if (s.state == ServerState::kOffline && t.rechecking) {
    t.rechecking = false;
    s.state = ServerState::kReturning;
    event(now, "returning", index, "answered a re-check");
    publish(now);
    t.returning_epoch = map_.epoch;
  }
}

bool Master::guard_allows(std::uint32_t index) const {
  const MapServer& s = map_.servers[index];
  std::size_t members = 0;
  std::size_t down = 1;  // this verdict
  for (std::size_t i = 0; i < map_.servers.size(); ++i) {
    if (map_.servers[i].group != s.group) continue;
    ++members;
    if (i != index &&
        (map_.servers[i].state != ServerState::kOnline || tracked_[i].offline_at_ns != 0)) {
      ++down;
    }
  }
  return down * 100 <=
         members * static_cast<std::size_t>(tunables::cache_max_offline_percent.get());
}

void Master::verdict_offline(std::uint32_t index, std::int64_t now, const std::string& how) {
  Tracked& t = tracked_[index];
  t.verifying = false;
  if (!guard_allows(index)) {
    ++stats_.deferred_by_guard;
    t.retry_verify_ns = now + tunables::cache_recheck_min_ms.get() * kMs;
    event(now, "verdict-deferred", index, how + ": the cascade guard keeps the group's majority");
    return;
  }
  event(now, "verdict-offline", index,
        how + " in " + std::to_string((now - t.first_report_ns) / 1000) + " us");
  // A silent server may be frozen with its lease still running: nobody else serves its types
  // before the lease it holds has run out. A refused one is dead: no wait.
  t.offline_at_ns = how == "refused" ? now : std::max(now, t.lease_end_ns);
  if (t.offline_at_ns <= now) mark_offline(index, now);
}

void Master::mark_offline(std::uint32_t index, std::int64_t now) {
  Tracked& t = tracked_[index];
  MapServer& s = map_.servers[index];
  t.offline_at_ns = 0;
  s.state = ServerState::kOffline;
  ++s.generation;
  ++stats_.marked_offline;
  t.recheck_backoff_ns = tunables::cache_recheck_min_ms.get() * kMs;
  t.next_recheck_ns = now + t.recheck_backoff_ns;
  t.rechecking = false;
  publish(now);
  t.offline_epoch = map_.epoch;
  t.group_notified = false;
  event(now, "offline", index,
        "map " + std::to_string(map_.epoch) + ", " +
            std::to_string((now - t.first_report_ns) / 1000) + " us after the first report");
}

void Master::publish(std::int64_t now) {
  ++map_.epoch;
  signed_map_ = encode_signed_map(map_, *config_.cluster_key, config_.id);
  ControlMessage notice;
  notice.kind = ControlKind::kNotice;
  notice.nonce = fresh_control_nonce();
  notice.epoch = map_.epoch;
  notice.sender = config_.id;
  notice.body = signed_map_;
  for (std::uint32_t i = 0; i < map_.servers.size(); ++i) {
    if (map_.servers[i].state == ServerState::kOffline) continue;
    send(notice, tracked_[i].control, false);
    tracked_[i].next_notice_ns = now + tunables::cache_notice_retry_ms.get() * kMs;
  }
  std::erase_if(watchers_, [now](const Watcher& w) { return w.until_ns < now; });
  for (const auto& w : watchers_) send(notice, w.at, true);
}

void Master::tend(std::int64_t now) {
  std::int64_t retry = tunables::cache_notice_retry_ms.get() * kMs;
  for (std::uint32_t i = 0; i < tracked_.size(); ++i) {
    Tracked& t = tracked_[i];
    MapServer& s = map_.servers[i];
    if (t.verifying) {
      if (now >= t.verify_deadline_ns) {
        verdict_offline(i, now, "silent");
      } else if (now >= t.next_probe_ns) {
        probe(i, now);
      }
    }
    // A verdict waiting for the lease to run out: keep probing, an answer cancels it.
    if (t.offline_at_ns != 0 && now < t.offline_at_ns && now >= t.next_probe_ns) probe(i, now);
    if (t.offline_at_ns != 0 && now >= t.offline_at_ns) {
      // One more look before the mark: a slow server that answered meanwhile stays.
      mark_offline(i, now);
    }
    if (s.state == ServerState::kOffline && now >= t.next_recheck_ns) {
      t.rechecking = true;
      probe(i, now);
      // Doubling, with jitter of +-20 %, so that re-checks of many servers spread out.
      t.recheck_backoff_ns =
          std::min(2 * t.recheck_backoff_ns, tunables::cache_recheck_max_ms.get() * kMs);
      std::uniform_int_distribution<std::int64_t> jitter(-t.recheck_backoff_ns / 5,
                                                         t.recheck_backoff_ns / 5);
      t.next_recheck_ns = now + t.recheck_backoff_ns + jitter(jitter_);
    }
    if (t.retry_verify_ns != 0 && now >= t.retry_verify_ns && s.state == ServerState::kOnline) {
      t.retry_verify_ns = 0;
      start_verification(i, now, "deferred");
    }
    // Notices not yet acknowledged go out again (to members that can answer).
    if (s.state != ServerState::kOffline && t.acked_epoch < map_.epoch && now >= t.next_notice_ns) {
      ControlMessage notice;
      notice.kind = ControlKind::kNotice;
      notice.nonce = fresh_control_nonce();
      notice.epoch = map_.epoch;
      notice.sender = config_.id;
      notice.body = signed_map_;
      send(notice, t.control, false);
      t.next_notice_ns = now + retry;
    }
    // Every reachable member of the group knows the offline mark: the verdict is out.
    if (!t.group_notified && s.state == ServerState::kOffline) {
      bool all = true;
      for (std::uint32_t j = 0; j < tracked_.size(); ++j) {
        if (j == i || map_.servers[j].group != s.group) continue;
        if (map_.servers[j].state == ServerState::kOffline) continue;
        all = all && tracked_[j].acked_epoch >= t.offline_epoch;
      }
      if (all) {
        t.group_notified = true;
        event(now, "group-notified", i,
              std::to_string((now - t.first_report_ns) / 1000) + " us after the first report");
      }
    }
    // The returning barrier: every other member of the group dropped and stopped serving the
    // server's types (acknowledged the returning map), or can serve nothing (lease ran out).
    if (s.state == ServerState::kReturning) {
      bool clear = true;
      for (std::uint32_t j = 0; j < tracked_.size(); ++j) {
        if (j == i || map_.servers[j].group != s.group) continue;
        clear = clear &&
                (tracked_[j].acked_epoch >= t.returning_epoch || tracked_[j].lease_end_ns < now);
      }
      if (clear) {
        s.state = ServerState::kOnline;
        ++stats_.marked_online;
        publish(now);
        event(now, "online", i, "map " + std::to_string(map_.epoch));
      }
    }
  }
}

}  // namespace viaduct::cluster::cache
