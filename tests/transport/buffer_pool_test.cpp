// The rendezvous pool's bounds, on the fake back end (registration is free there; the accounting
// is what is tested).
#include "transport/buffer_pool.hpp"
#include "tests/scoped_tunable.hpp"

#include <gtest/gtest.h>

#include "transport/tunables.hpp"

namespace viaduct::transport {
namespace {

constexpr std::size_t kMiB = 1 << 20;

std::unique_ptr<Domain> fake_domain() {
  return std::move(Domain::open(Address::parse("fake://pool:0").value()).value());
}

TEST(RendezvousPool, ChannelBound_FullPoolWaitsThenReusesReleased) {
  auto domain = fake_domain();
  RendezvousPool pool(*domain, Access::kLocal, domain->incoming_staging(), 4 * kMiB, 4 * kMiB);
  std::vector<std::uint32_t> held;
  for (int i = 0; i < 4; ++i) {
    auto h = pool.acquire(kMiB);
    ASSERT_TRUE(h.is_ok()) << h.status().to_string();
    held.push_back(h.value());
  }
  EXPECT_EQ(pool.registered_bytes(), 4 * kMiB);
  auto over = pool.acquire(kMiB);
  ASSERT_FALSE(over.is_ok());
  EXPECT_EQ(over.status().code(), Code::kWouldBlock);
  EXPECT_NE(over.status().message().find("channel_max_staging_bytes"), std::string::npos);
  pool.release(held.back());
  auto again = pool.acquire(kMiB);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again.value(), held.back());  // reused, not registered anew
  EXPECT_EQ(pool.registered_bytes(), 4 * kMiB);
  // A payload that could never fit is an error, not a wait.
  EXPECT_EQ(pool.acquire(5 * kMiB).status().code(), Code::kResource);
}

TEST(RendezvousPool, IdleBeyondMaxIdle_Deregistered) {
  auto domain = fake_domain();
  RendezvousPool pool(*domain, Access::kLocal, domain->incoming_staging(), 64 * kMiB, 2 * kMiB);
  std::vector<std::uint32_t> held;
  for (int i = 0; i < 6; ++i) held.push_back(pool.acquire(kMiB).value());
  EXPECT_EQ(domain->incoming_staging().used_bytes(), 6 * kMiB);
  for (auto h : held) pool.release(h);
  EXPECT_LE(pool.idle_bytes(), 2 * kMiB);
  EXPECT_EQ(pool.registered_bytes(), pool.idle_bytes());
  EXPECT_EQ(domain->incoming_staging().used_bytes(), pool.registered_bytes());
  // An idle buffer of another size class gives way to a new one when the pool is full.
  RendezvousPool small(*domain, Access::kLocal, domain->outgoing_staging(), 2 * kMiB, 2 * kMiB);
  small.release(small.acquire(2 * kMiB).value());
  auto other = small.acquire(kMiB);
  ASSERT_TRUE(other.is_ok()) << other.status().to_string();
  EXPECT_EQ(small.registered_bytes(), kMiB);
}

TEST(RendezvousPool, DomainBudget_SharedByPoolsAndReturnedOnDestruction) {
  viaduct::testing::ScopedTunable scoped_max_staging_bytes(tunables::domain_max_staging_bytes,
                                                           3 * kMiB);
  ASSERT_TRUE(scoped_max_staging_bytes.ok());
  auto domain = fake_domain();
  StagingBudget& budget = domain->incoming_staging();
  auto a = std::make_unique<RendezvousPool>(*domain, Access::kLocal, budget, 64 * kMiB, 64 * kMiB);
  RendezvousPool b(*domain, Access::kLocal, budget, 64 * kMiB, 64 * kMiB);
  auto a1 = a->acquire(2 * kMiB);
  ASSERT_TRUE(a1.is_ok());
  auto b1 = b.acquire(2 * kMiB);
  ASSERT_FALSE(b1.is_ok());
  EXPECT_EQ(b1.status().code(), Code::kWouldBlock);
  EXPECT_NE(b1.status().message().find("domain_max_staging_bytes"), std::string::npos);
  EXPECT_TRUE(budget.starved());
  // Idle buffers of the other pool hold the budget: trimming them (what a channel does when the
  // budget is starved) lets the waiting one through.
  a->release(a1.value());
  EXPECT_FALSE(b.acquire(2 * kMiB).is_ok());
  a->trim_idle(0);
  auto b2 = b.acquire(2 * kMiB);
  ASSERT_TRUE(b2.is_ok());
  EXPECT_FALSE(budget.starved());
  EXPECT_EQ(budget.used_bytes(), 2 * kMiB);
  a.reset();
  b.release(b2.value());
  b.trim_idle(0);
  EXPECT_EQ(budget.used_bytes(), 0u);
}

}  // namespace
}  // namespace viaduct::transport
