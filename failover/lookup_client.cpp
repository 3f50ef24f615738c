#include "failover/lookup_client.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace viaduct::failover {

namespace tunables {
Tunable lookup_timeout_ms("failover", "lookup_timeout_ms", 1000, 1, 600000,
                          "how long a name lookup waits for any responder to answer");
// During a failover the first lookup often goes out just before the passive takes over, so the
// first re-send comes quickly; later ones back off (doubling, up to kMaxRetryInterval) so a
// cluster with nobody answering is not flooded.
Tunable lookup_retry_interval_ms(
    "failover", "lookup_retry_interval_ms", 1, 1, 60000,
    "first re-send of an unanswered lookup (then doubling, up to 50 ms)");
}  // namespace tunables

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kMaxRetryInterval = std::chrono::milliseconds(50);

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<UdpSocket> client_socket(std::span<const UdpEndpoint> responders) {
  if (responders.empty()) return Status(Code::kInvalidArgument, "no lookup responders configured");
  auto local = UdpEndpoint::from(responders[0].addr.ss_family == AF_INET6 ? "::" : "0.0.0.0", 0);
  if (!local) return local.status();
  // Port 0 gives a fresh ephemeral port; from() refuses 0 only in parse().
  return UdpSocket::bind(local.value());
}

}  // namespace

Result<LookupAnswer> lookup(std::string_view name, std::span<const UdpEndpoint> responders,
                            int timeout_ms) {
  if (name.empty() || name.size() > ssrp::kMaxInstanceNameBytes) {
    return Status(Code::kInvalidArgument, "service name must be 1..32 bytes");
  }
  if (timeout_ms == 0) timeout_ms = static_cast<int>(tunables::lookup_timeout_ms.get());
  auto sock = client_socket(responders);
  if (!sock) return sock.status();
  auto request = ssrp::encode_request({ssrp::MessageType::kClientUnicastInst, std::string(name)});
  std::string wanted = lower(name);
  auto start = Clock::now();
  auto deadline = start + std::chrono::milliseconds(timeout_ms);
  auto retry = std::chrono::milliseconds(tunables::lookup_retry_interval_ms.get());
  auto next_send = start;
  std::array<std::byte, 70000> buffer;
  for (;;) {
    auto now = Clock::now();
    if (now >= next_send) {
      for (const auto& r : responders) (void)sock->send_to(request, r);
      next_send = now + retry;
      retry = std::min<std::chrono::milliseconds>(retry * 2, kMaxRetryInterval);
    }
    if (now >= deadline) break;
    auto wait = std::min(deadline, next_send) - now;
    if (!sock->wait_readable(static_cast<int>(std::max<std::int64_t>(
            1, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count())))) {
      continue;
    }
    UdpEndpoint from;
    for (;;) {
      auto n = sock->receive(buffer, &from);
      if (!n || n.value() == 0) break;
      if (n.value() > buffer.size()) continue;  // truncated: not a valid answer
      auto records = ssrp::decode_response({buffer.data(), n.value()});
      if (!records) continue;  // garbage or spoofing attempt: ignore, keep waiting
      for (auto& rec : records.value()) {
        if (lower(rec.instance_name) != wanted) continue;
        LookupAnswer a{std::move(rec), from,
                       std::chrono::duration<double, std::milli>(Clock::now() - start).count()};
        return a;
      }
    }
  }
  return Status(Code::kTimeout, "no server answers for '" + std::string(name) + "' within " +
                                    std::to_string(timeout_ms) + " ms");
}

Result<std::vector<LookupAnswer>> list_instances(std::span<const UdpEndpoint> responders,
                                                 int timeout_ms) {
  auto sock = client_socket(responders);
  if (!sock) return sock.status();
  auto request = ssrp::encode_request({ssrp::MessageType::kClientUnicastEx, {}});
  for (const auto& r : responders) (void)sock->send_to(request, r);
  auto start = Clock::now();
  auto deadline = start + std::chrono::milliseconds(timeout_ms);
  std::vector<LookupAnswer> answers;
  std::array<std::byte, 70000> buffer;
  while (Clock::now() < deadline) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (!sock->wait_readable(static_cast<int>(std::max<std::int64_t>(1, left)))) continue;
    UdpEndpoint from;
    auto n = sock->receive(buffer, &from);
    if (!n || n.value() == 0 || n.value() > buffer.size()) continue;
    auto records = ssrp::decode_response({buffer.data(), n.value()});
    if (!records) continue;
    for (auto& rec : records.value()) {
      answers.push_back({std::move(rec), from,
                         std::chrono::duration<double, std::milli>(Clock::now() - start).count()});
    }
  }
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
