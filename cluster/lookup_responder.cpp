#include "cluster/lookup_responder.hpp"
#include "transport/clock.hpp"

#include <array>
#include <cctype>
#include <chrono>
#include <vector>

namespace viaduct::cluster {

namespace tunables {
Tunable lookup_rate_limit_per_s("cluster", "lookup_rate_limit_per_s", 200, 1, 1000000,
                                "lookup requests answered per second per source address");
Tunable lookup_max_datagrams_per_round(
    "cluster", "lookup_max_datagrams_per_round", 64, 1, 65536,
    "lookup datagrams read per serving round at most (the rest wait for the next round): a flood "
    "cannot hold the serving thread");
}  // namespace tunables

namespace {
namespace ssrp = failover::ssrp;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Bounds the per-source table: a flood from spoofed sources must not grow it without limit.
constexpr std::size_t kMaxTrackedSources = 4096;
// Largest request worth reading: type + DAC version + 32-byte name + NUL.
constexpr std::size_t kMaxRequestBytes = 2 + ssrp::kMaxInstanceNameBytes + 1;
}  // namespace

Result<std::unique_ptr<LookupResponder>> LookupResponder::bind(const std::string& host,
                                                               std::uint16_t port) {
  auto local = failover::UdpEndpoint::from(host, port);
  if (!local) return local.status();
  auto sock = failover::UdpSocket::bind(local.value());
  if (!sock) return sock.status();
  std::unique_ptr<LookupResponder> r(new LookupResponder());  // private constructor
  r->socket_ = std::move(sock.value());
  return r;
}

void LookupResponder::set_active(const ssrp::InstanceRecord& record) {
  std::lock_guard lock(mutex_);
  active_[lower(record.instance_name)] = record;
}

void LookupResponder::set_inactive(const std::string& name) {
  std::lock_guard lock(mutex_);
  active_.erase(lower(name));
}

bool LookupResponder::admit(const failover::UdpEndpoint& from) {
  double rate = static_cast<double>(tunables::lookup_rate_limit_per_s.get());
  std::int64_t now = steady_now_ns();
  if (buckets_.size() >= kMaxTrackedSources) buckets_.clear();
  auto [it, fresh] = buckets_.try_emplace(from.host(), Bucket{rate, now});
  Bucket& b = it->second;
  if (!fresh) {
    b.tokens = std::min(rate, b.tokens + rate * static_cast<double>(now - b.last_ns) / 1e9);
    b.last_ns = now;
  }
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void LookupResponder::handle(std::span<const std::byte> packet, const failover::UdpEndpoint& from) {
  auto request = ssrp::decode_request(packet);
  if (!request) {
    ++stats_.malformed;  // no negative replies: silence
    return;
  }
  if (!admit(from)) {
    ++stats_.rate_limited;
    return;
  }
  std::vector<ssrp::InstanceRecord> records;
  std::size_t limit = ssrp::kMaxInstanceRespBytes;
  {
    std::lock_guard lock(mutex_);
    if (request->type == ssrp::MessageType::kClientUnicastInst) {
      auto it = active_.find(lower(request->instance_name));
      if (it != active_.end()) records.push_back(it->second);
    } else if (request->type == ssrp::MessageType::kClientUnicastDac) {
      // viaduct has no dedicated admin connection; like an instance without one, stay silent.
    } else {
      for (const auto& [name, rec] : active_) records.push_back(rec);
      limit = ssrp::kMaxExRespBytes;
    }
  }
  if (records.empty()) {
    ++stats_.unknown_name;
    return;
  }
  auto response = ssrp::encode_response(records, limit);
  while (!response && records.size() > 1) {  // too many names for one answer: send what fits
    records.pop_back();
    response = ssrp::encode_response(records, limit);
  }
  if (!response) return;
  if (socket_.send_to(response.value(), from)) ++stats_.answered;
}

std::size_t LookupResponder::handle_pending() {
  const auto max = static_cast<std::size_t>(tunables::lookup_max_datagrams_per_round.get());
  std::array<std::byte, kMaxRequestBytes + 1> buffer;
  std::size_t handled = 0;
  while (handled < max) {
    failover::UdpEndpoint from;
    // kWouldBlock: drained. Any other error (none is expected on a bound UDP socket) also ends
    // the round; the next one tries again.
    auto n = socket_.receive(buffer, &from);
    if (!n) break;
    ++handled;
    // Empty (a valid datagram, an invalid request: it must not end the round) or oversized (never
    // a valid request; MSG_TRUNC reports its real size).
    if (n.value() == 0 || n.value() > kMaxRequestBytes) {
      ++stats_.malformed;
      continue;
    }
    handle({buffer.data(), n.value()}, from);
  }
  return handled;
}

void LookupResponder::run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
    if (socket_.wait_readable(50)) (void)handle_pending();
  }
}

}  // namespace viaduct::cluster
