// The responder's budgets driven without I/O: a clock in nanoseconds and source addresses.
#include "cluster/lookup_rate_limiter.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include <cstring>

namespace viaduct::cluster {
namespace {

using Verdict = LookupRateLimiter::Verdict;
constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kT0 = 1000 * kSecond;

sockaddr_storage v4(std::uint32_t host_order, std::uint16_t port = 5000) {
  sockaddr_storage s{};
  auto* a = reinterpret_cast<sockaddr_in*>(&s);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  a->sin_addr.s_addr = htonl(host_order);
  return s;
}

sockaddr_storage v6(const char* text) {
  sockaddr_storage s{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&s);
  a->sin6_family = AF_INET6;
  inet_pton(AF_INET6, text, &a->sin6_addr);
  return s;
}

LookupLimits limits(double requests, double source_bytes = 1e6, double answers = 1e6,
                    double bytes = 1e9) {
  return {requests, source_bytes, answers, bytes};
}

int admitted_requests(LookupRateLimiter& l, const sockaddr_storage& from, int n,
                      const LookupLimits& lim, std::int64_t now) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += l.admit_request(from, lim, now) == Verdict::kAdmitted;
  return ok;
}

TEST(LookupRateLimiter, SourceGetsOneSecondOfItsRateThenTheRefill) {
  LookupRateLimiter l(1);
  auto lim = limits(100);
  auto a = v4(0x7f000001);
  EXPECT_EQ(admitted_requests(l, a, 300, lim, kT0), 100);
  EXPECT_EQ(admitted_requests(l, a, 300, lim, kT0 + kSecond / 10), 10);
  // The source port does not make another source.
  EXPECT_EQ(admitted_requests(l, v4(0x7f000001, 6000), 10, lim, kT0 + kSecond / 10), 0);
}

TEST(LookupRateLimiter, SprayOfOneMillionSources_NeverRefillsAnotherSource) {
  LookupRateLimiter l(42);
  auto lim = limits(100);
  auto flooder = v4(0x0a000001);
  ASSERT_EQ(admitted_requests(l, flooder, 200, lim, kT0), 100);
  for (std::uint32_t i = 0; i < 1'000'000; ++i) (void)l.admit_request(v4(0x0b000000 + i), lim, kT0);
  EXPECT_EQ(admitted_requests(l, flooder, 200, lim, kT0), 0);
}

TEST(LookupRateLimiter, Ipv6SourcesInOneSlash64_ShareOneAllowance) {
  LookupRateLimiter l(7);
  auto lim = limits(10);
  EXPECT_EQ(admitted_requests(l, v6("2001:db8:1:2::1"), 20, lim, kT0), 10);
  EXPECT_EQ(admitted_requests(l, v6("2001:db8:1:2:ffff::9"), 20, lim, kT0), 0);
  EXPECT_EQ(l.slot_of(v6("::ffff:10.0.0.1")), l.slot_of(v4(0x0a000001)));
}

TEST(LookupRateLimiter, AnswerBudgets_TakenTogetherOrNotAtAll) {
  LookupRateLimiter l(3);
  auto lim = limits(1000, /*source_bytes=*/1000, /*answers=*/5, /*bytes=*/1500);
  auto a = v4(1);
  auto b = v4(2);
  EXPECT_EQ(l.admit_answer(a, 600, lim, kT0), Verdict::kAdmitted);
  EXPECT_EQ(l.admit_answer(a, 600, lim, kT0), Verdict::kSourceBytes);
  EXPECT_EQ(l.admit_answer(b, 600, lim, kT0), Verdict::kAdmitted);
  EXPECT_EQ(l.admit_answer(v4(3), 600, lim, kT0), Verdict::kGlobalBytes);
  // Refused answers took nothing: 300 global bytes are left.
  EXPECT_EQ(l.admit_answer(v4(3), 300, lim, kT0), Verdict::kAdmitted);
  EXPECT_EQ(l.admit_answer(v4(4), 1, lim, kT0), Verdict::kGlobalBytes);
  auto few = limits(1000, 1000, /*answers=*/2, 1e9);
  LookupRateLimiter m(3);
  EXPECT_EQ(m.admit_answer(a, 1, few, kT0), Verdict::kAdmitted);
  EXPECT_EQ(m.admit_answer(b, 1, few, kT0), Verdict::kAdmitted);
  EXPECT_EQ(m.admit_answer(v4(3), 1, few, kT0), Verdict::kGlobalAnswers);
  EXPECT_EQ(m.admit_answer(v4(3), 1, few, kT0 + kSecond / 2), Verdict::kAdmitted);
}

TEST(LookupRateLimiter, LoweredRate_ClampsWhatWasSaved) {
  LookupRateLimiter l(5);
  auto a = v4(9);
  EXPECT_EQ(admitted_requests(l, a, 1, limits(1000), kT0), 1);
  EXPECT_EQ(admitted_requests(l, a, 100, limits(10), kT0 + 1), 10);
}

}  // namespace
}  // namespace viaduct::cluster
