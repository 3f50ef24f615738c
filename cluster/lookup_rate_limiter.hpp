// The lookup responder's budgets: how much a UDP lookup can make it send, per source and in all.
//
// The request is one datagram that anybody can send with any source address, and the answer is
// larger (118x for a one-byte CLNT_UCAST_EX naming one instance): without limits the responder is
// an amplifier aimed at whoever the source claims to be. Three limits apply, all token buckets
// holding at most one second of their rate:
//   - per source, requests per second (lookup_rate_limit_per_s), taken for every well-formed
//     request before any work is done for it;
//   - per source, answer bytes per second (lookup_source_answer_bytes_per_s);
//   - over all sources, answers and answer bytes per second (lookup_global_answers_per_s,
//     lookup_global_answer_bytes_per_s): the bound on what a spoofed spray from many sources,
//     each under its own limit, can reflect.
// The three answer budgets are taken together or not at all.
//
// Why a fixed array of hashed slots, not a table of sources: a table must forget sources when it
// is full, and whatever it forgets comes back with a fresh allowance, so a spray of spoofed
// sources (cheap) resets the limit of the source it wants to flood from. Here a source's slot is
// never reset, only refilled with time; sources that hash to the same slot share one allowance
// (a spray drains slots, it never refills one). The hash is keyed with a per-responder random
// seed so that which sources share a slot cannot be chosen from outside. IPv6 sources are keyed by
// their /64, the block one host can use freely. O(1) per packet, no allocation after set-up.
//
// Under a spray that exhausts the global budget, genuine clients go unanswered too: they retry,
// and the alternative (reflecting without bound) is worse. Lookup answers are only hints anyway.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "transport/tunable.hpp"

namespace viaduct::cluster {

namespace tunables {
extern Tunable lookup_rate_limit_per_s;
extern Tunable lookup_source_answer_bytes_per_s;
extern Tunable lookup_global_answers_per_s;
extern Tunable lookup_global_answer_bytes_per_s;
}  // namespace tunables

// The rates in force, read from the tunables once per serving round.
struct LookupLimits {
  double source_requests_per_s = 0;
  double source_answer_bytes_per_s = 0;
  double global_answers_per_s = 0;
  double global_answer_bytes_per_s = 0;
  static LookupLimits from_tunables();
};

// A token bucket of capacity one second of `rate_per_s`, refilled lazily. Starts full.
struct TokenBucket {
  double tokens = 0;
  std::int64_t last_ns = 0;  // 0: never used
  void refill(double rate_per_s, std::int64_t now_ns);
};

class LookupRateLimiter {
 public:
  // A power of two; 8192 slots of 32 bytes, allocated once.
  static constexpr std::size_t kSourceSlots = 8192;

  enum class Verdict : std::uint8_t {
    kAdmitted,
    kSourceRequests,  // the source is over its request rate
    kSourceBytes,     // the answer would exceed the source's byte budget
    kGlobalAnswers,   // the responder answered its answers/s in all
    kGlobalBytes,     // the responder sent its bytes/s in all
  };
  static std::string_view verdict_name(Verdict v);

  // `seed` keys the source hash (random per responder; fixed in tests).
  explicit LookupRateLimiter(std::uint64_t seed);

  // For every well-formed request, before any work for it.
  Verdict admit_request(const sockaddr_storage& from, const LookupLimits& limits,
                        std::int64_t now_ns);
  // Before sending an answer of `bytes` to `from`.
  Verdict admit_answer(const sockaddr_storage& from, std::size_t bytes, const LookupLimits& limits,
                       std::int64_t now_ns);

  [[nodiscard]] std::size_t slot_of(const sockaddr_storage& from) const;

 private:
  struct SourceSlot {
    TokenBucket requests;
    TokenBucket bytes;
  };
  std::uint64_t seed_;
  std::vector<SourceSlot> slots_;
  TokenBucket global_answers_;
  TokenBucket global_bytes_;
};

}  // namespace viaduct::cluster
