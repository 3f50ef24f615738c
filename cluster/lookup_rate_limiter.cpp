#include "cluster/lookup_rate_limiter.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace viaduct::cluster {

namespace tunables {
Tunable lookup_rate_limit_per_s("cluster", "lookup_rate_limit_per_s", 200, 1, 1000000,
                                "lookup requests answered per second per source address");
Tunable lookup_source_answer_bytes_per_s(
    "cluster", "lookup_source_answer_bytes_per_s", 65536, 2048, 100'000'000,
    "lookup answer bytes sent per second per source address (a listing of all instances is cut "
    "to what fits)");
Tunable lookup_global_answers_per_s(
    "cluster", "lookup_global_answers_per_s", 10000, 1, 10'000'000,
    "lookup answers sent per second over all sources: caps reflection by spoofed sources");
Tunable lookup_global_answer_bytes_per_s(
    "cluster", "lookup_global_answer_bytes_per_s", 2'000'000, 2048, 1'000'000'000,
    "lookup answer bytes sent per second over all sources: caps reflection by spoofed sources");
}  // namespace tunables

namespace {

// splitmix64's finaliser: every input bit affects every output bit.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// What identifies a source: its IPv4 address (also when IPv4-mapped), or its IPv6 /64.
std::uint64_t source_key(const sockaddr_storage& from) {
  if (from.ss_family == AF_INET) {
    return ntohl(reinterpret_cast<const sockaddr_in*>(&from)->sin_addr.s_addr);
  }
  if (from.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6*>(&from)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      std::uint32_t v4 = 0;
      std::memcpy(&v4, a.s6_addr + 12, sizeof(v4));
      return ntohl(v4);
    }
    std::uint64_t prefix = 0;
    std::memcpy(&prefix, a.s6_addr, sizeof(prefix));
    return mix(prefix) | (std::uint64_t{1} << 32);  // apart from the IPv4 keys (below 2^32)
  }
  return 0;
}

}  // namespace

LookupLimits LookupLimits::from_tunables() {
  LookupLimits l;
  l.source_requests_per_s = static_cast<double>(tunables::lookup_rate_limit_per_s.get());
  l.source_answer_bytes_per_s =
      static_cast<double>(tunables::lookup_source_answer_bytes_per_s.get());
  l.global_answers_per_s = static_cast<double>(tunables::lookup_global_answers_per_s.get());
  l.global_answer_bytes_per_s =
      static_cast<double>(tunables::lookup_global_answer_bytes_per_s.get());
  return l;
}

void TokenBucket::refill(double rate_per_s, std::int64_t now_ns) {
  if (last_ns == 0) {
    tokens = rate_per_s;
  } else if (now_ns > last_ns) {
    tokens += rate_per_s * static_cast<double>(now_ns - last_ns) / 1e9;
  }
  // Also clamps when the rate was lowered meanwhile.
  tokens = std::min(tokens, rate_per_s);
  last_ns = std::max(last_ns, now_ns);
}

std::string_view LookupRateLimiter::verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kAdmitted:
      return "admitted";
    case Verdict::kSourceRequests:
      return "source_requests";
    case Verdict::kSourceBytes:
      return "source_bytes";
    case Verdict::kGlobalAnswers:
      return "global_answers";
    case Verdict::kGlobalBytes:
      return "global_bytes";
  }
  return "?";
}

LookupRateLimiter::LookupRateLimiter(std::uint64_t seed) : seed_(seed), slots_(kSourceSlots) {
  static_assert((kSourceSlots & (kSourceSlots - 1)) == 0, "kSourceSlots must be a power of two");
}

std::size_t LookupRateLimiter::slot_of(const sockaddr_storage& from) const {
  return static_cast<std::size_t>(mix(source_key(from) ^ seed_) & (kSourceSlots - 1));
}

LookupRateLimiter::Verdict LookupRateLimiter::admit_request(const sockaddr_storage& from,
                                                            const LookupLimits& limits,
                                                            std::int64_t now_ns) {
  TokenBucket& b = slots_[slot_of(from)].requests;
  b.refill(limits.source_requests_per_s, now_ns);
  if (b.tokens < 1) return Verdict::kSourceRequests;
  b.tokens -= 1;
  return Verdict::kAdmitted;
}

LookupRateLimiter::Verdict LookupRateLimiter::admit_answer(const sockaddr_storage& from,
                                                           std::size_t bytes,
                                                           const LookupLimits& limits,
                                                           std::int64_t now_ns) {
  auto cost = static_cast<double>(bytes);
  TokenBucket& source = slots_[slot_of(from)].bytes;
  source.refill(limits.source_answer_bytes_per_s, now_ns);
  global_answers_.refill(limits.global_answers_per_s, now_ns);
  global_bytes_.refill(limits.global_answer_bytes_per_s, now_ns);
  // An answer larger than a budget's one-second capacity is never sent: no burst exceeds it.
  if (source.tokens < cost) return Verdict::kSourceBytes;
  if (global_answers_.tokens < 1) return Verdict::kGlobalAnswers;
  if (global_bytes_.tokens < cost) return Verdict::kGlobalBytes;
  source.tokens -= cost;
  global_answers_.tokens -= 1;
  global_bytes_.tokens -= cost;
  return Verdict::kAdmitted;
}

}  // namespace viaduct::cluster
