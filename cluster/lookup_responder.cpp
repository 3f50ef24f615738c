#include "cluster/lookup_responder.hpp"
#include "transport/clock.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <random>
#include <vector>

namespace viaduct::cluster {

namespace tunables {
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

// Largest request worth reading: type + DAC version + 32-byte name + NUL.
constexpr std::size_t kMaxRequestBytes = 2 + ssrp::kMaxInstanceNameBytes + 1;
}  // namespace

Result<std::unique_ptr<LookupResponder>> LookupResponder::bind(const std::string& host,
                                                               std::uint16_t port) {
  auto local = failover::UdpEndpoint::from(host, port);
  if (!local) return local.status();
  auto sock = failover::UdpSocket::bind(local.value());
  if (!sock) return sock.status();
  std::random_device entropy;
  std::uint64_t seed = (static_cast<std::uint64_t>(entropy()) << 32) ^ entropy();
  std::unique_ptr<LookupResponder> r(new LookupResponder(seed));  // private constructor
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

void LookupResponder::handle(std::span<const std::byte> packet, const failover::UdpEndpoint& from,
                             const LookupLimits& limits, std::int64_t now_ns) {
  auto request = ssrp::decode_request(packet);
  if (!request) {
    ++stats_.malformed;  // no negative replies: silence
    return;
  }
  if (limiter_.admit_request(from.addr, limits, now_ns) != LookupRateLimiter::Verdict::kAdmitted) {
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
      // A listing larger than the source's byte budget could never be sent: cut it to what fits.
      limit = std::min(ssrp::kMaxExRespBytes,
                       static_cast<std::size_t>(limits.source_answer_bytes_per_s) - 3);
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
  switch (limiter_.admit_answer(from.addr, response->size(), limits, now_ns)) {
    case LookupRateLimiter::Verdict::kAdmitted:
      break;
    case LookupRateLimiter::Verdict::kSourceRequests:
    case LookupRateLimiter::Verdict::kSourceBytes:
      ++stats_.rate_limited;
      return;
    case LookupRateLimiter::Verdict::kGlobalAnswers:
    case LookupRateLimiter::Verdict::kGlobalBytes:
      ++stats_.budget_exhausted;
      return;
  }
  if (socket_.send_to(response.value(), from)) {
    ++stats_.answered;
    stats_.answer_bytes += response->size();
  }
}

std::size_t LookupResponder::handle_pending() {
  // One reading of the tunables and the clock per round: a round is microseconds long.
  const auto max = static_cast<std::size_t>(tunables::lookup_max_datagrams_per_round.get());
  const LookupLimits limits = LookupLimits::from_tunables();
  const std::int64_t now_ns = steady_now_ns();
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
    handle({buffer.data(), n.value()}, from, limits, now_ns);
  }
  return handled;
}

void LookupResponder::run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
    if (socket_.wait_readable(50)) (void)handle_pending();
  }
}

}  // namespace viaduct::cluster
