#include "failover/lookup_client.hpp"

#include <poll.h>
#include <algorithm>
#include <array>
#include <cctype>

#include "transport/clock.hpp"

namespace viaduct::failover {

namespace tunables {
Tunable lookup_timeout_ms("failover", "lookup_timeout_ms", 1000, 1, 600000,
                          "how long a name lookup waits for any responder to answer");
Tunable lookup_retry_interval_us(
    "failover", "lookup_retry_interval_us", 250, 10, 60'000'000,
    "re-send interval of an unanswered lookup for its first 50 ms (then doubling, up to 50 ms)");
}  // namespace tunables

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kFastRetryWindow = std::chrono::milliseconds(50);
constexpr auto kMaxRetryInterval = std::chrono::milliseconds(50);

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && lower(a) == lower(b);
}

Result<UdpSocket> client_socket(std::span<const UdpEndpoint> responders) {
  if (responders.empty()) return Status(Code::kInvalidArgument, "no lookup responders configured");
  auto local = UdpEndpoint::from(responders[0].addr.ss_family == AF_INET6 ? "::" : "0.0.0.0", 0);
  if (!local) return local.status();
  // Port 0 gives a fresh ephemeral port; from() refuses 0 only in parse().
  return UdpSocket::bind(local.value());
}

}  // namespace

LookupClientStats& LookupClientStats::operator+=(const LookupClientStats& o) {
  accepted += o.accepted;
  wrong_source += o.wrong_source;
  wrong_name += o.wrong_name;
  malformed += o.malformed;
  return *this;
}

Result<LookupProbe> LookupProbe::open(std::span<const UdpEndpoint> responders) {
  auto sock = client_socket(responders);
  if (!sock) return sock.status();
  LookupProbe probe;
  probe.socket_ = std::move(sock.value());
  probe.responders_.assign(responders.begin(), responders.end());
  return probe;
}

void LookupProbe::send(std::string_view name) {
  auto request = ssrp::encode_request({ssrp::MessageType::kClientUnicastInst, std::string(name)});
  if (sent_ns_ == 0) sent_ns_ = steady_now_ns();
  // A responder that is down or unreachable must not keep the others from being asked.
  for (const auto& r : responders_) (void)socket_.send_to(request, r);
}

bool LookupProbe::asked(const UdpEndpoint& from) const {
  return std::any_of(responders_.begin(), responders_.end(),
                     [&](const UdpEndpoint& r) { return r.same_as(from); });
}

std::optional<LookupAnswer> LookupProbe::receive(std::string_view name) {
  // Big enough for any datagram: a longer one would be truncated, and a truncated answer is
  // never valid.
  std::array<std::byte, 65536> buffer;
  UdpEndpoint from;
  for (int i = 0; i < kMaxDatagramsPerReceive; ++i) {
    auto n = socket_.receive(buffer, &from);
    if (!n) return std::nullopt;  // kWouldBlock: nothing more waiting
    if (!asked(from)) {
      ++stats_.wrong_source;  // whatever it says: a forgery or a stray, not an answer
      continue;
    }
    if (n.value() == 0 || n.value() > buffer.size()) {
      ++stats_.malformed;  // empty or truncated; an empty datagram must not end the read
      continue;
    }
    auto records = ssrp::decode_response({buffer.data(), n.value()});
    if (!records) {
      ++stats_.malformed;
      continue;
    }
    for (auto& rec : records.value()) {
      if (!same_name(rec.instance_name, name)) continue;
      double elapsed = static_cast<double>(steady_now_ns() - sent_ns_) / 1e6;
      sent_ns_ = 0;
      ++stats_.accepted;
      return LookupAnswer{std::move(rec), from, elapsed};
    }
    ++stats_.wrong_name;
  }
  return std::nullopt;
}

Result<LookupAnswer> lookup(std::string_view name, std::span<const UdpEndpoint> responders,
                            int timeout_ms, LookupClientStats* stats) {
  if (name.empty() || name.size() > ssrp::kMaxInstanceNameBytes) {
    return Status(Code::kInvalidArgument, "service name must be 1..32 bytes");
  }
  if (timeout_ms == 0) timeout_ms = static_cast<int>(tunables::lookup_timeout_ms.get());
  auto probe = LookupProbe::open(responders);
  if (!probe) return probe.status();
  auto done = [&](Result<LookupAnswer> result) {
    if (stats != nullptr) *stats += probe->stats();
    return result;
  };
  auto start = Clock::now();
  auto deadline = start + std::chrono::milliseconds(timeout_ms);
  auto retry = std::chrono::microseconds(tunables::lookup_retry_interval_us.get());
  auto next_send = start;
  for (;;) {
    auto now = Clock::now();
    if (now >= next_send) {
      probe->send(name);
      next_send = now + retry;
      if (now - start >= kFastRetryWindow) {
        retry = std::min<std::chrono::microseconds>(retry * 2, kMaxRetryInterval);
      }
    }
    if (now >= deadline) break;
    auto wait_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::min(deadline, next_send) - now)
            .count();
    pollfd p{probe->fd(), POLLIN, 0};
    timespec ts{static_cast<time_t>(wait_us / 1'000'000),
                static_cast<long>((wait_us % 1'000'000) * 1000)};
    if (ppoll(&p, 1, &ts, nullptr) <= 0) continue;
    if (auto answer = probe->receive(name)) return done(std::move(*answer));
  }
  // The responders asked, so that the operator can tell a wrong list from a dead cluster.
  std::string asked;
  for (const auto& responder : responders) {
    asked += (asked.empty() ? "" : ",") + responder.to_string();
  }
  return done(Status(Code::kTimeout, "no server answers for '" + std::string(name) + "' within " +
                                         std::to_string(timeout_ms) + " ms (asked " + asked + ")"));
}

Result<std::vector<LookupAnswer>> list_instances(std::span<const UdpEndpoint> responders,
                                                 int timeout_ms, LookupClientStats* stats) {
  auto sock = client_socket(responders);
  if (!sock) return sock.status();
  auto request = ssrp::encode_request({ssrp::MessageType::kClientUnicastEx, {}});
  for (const auto& r : responders) (void)sock->send_to(request, r);
  auto asked = [&](const UdpEndpoint& from) {
    return std::any_of(responders.begin(), responders.end(),
                       [&](const UdpEndpoint& r) { return r.same_as(from); });
  };
  auto start = Clock::now();
  auto deadline = start + std::chrono::milliseconds(timeout_ms);
  std::vector<LookupAnswer> answers;
  LookupClientStats counted;
  std::array<std::byte, 70000> buffer;
  while (Clock::now() < deadline) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (!sock->wait_readable(static_cast<int>(std::max<std::int64_t>(1, left)))) continue;
    UdpEndpoint from;
    auto n = sock->receive(buffer, &from);
    if (!n) continue;
    if (!asked(from)) {
      ++counted.wrong_source;
      continue;
    }
    auto records = n.value() == 0 || n.value() > buffer.size()
                       ? Result<std::vector<ssrp::InstanceRecord>>(Status(Code::kMalformed, {}))
                       : ssrp::decode_response({buffer.data(), n.value()});
    if (!records) {
      ++counted.malformed;
      continue;
    }
    ++counted.accepted;
    for (auto& rec : records.value()) {
      answers.push_back({std::move(rec), from,
                         std::chrono::duration<double, std::milli>(Clock::now() - start).count()});
    }
  }
  if (stats != nullptr) *stats += counted;
  return answers;
}

std::optional<ssrp::InstanceRecord> LookupCache::get(const std::string& name) const {
  auto it = entries_.find(lower(name));
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void LookupCache::put(const ssrp::InstanceRecord& record) {
  purge(record.instance_name);
  entries_.emplace(lower(record.instance_name), record);
}

void LookupCache::purge(const std::string& name) {
  entries_.erase(lower(name));
}

}  // namespace viaduct::failover
