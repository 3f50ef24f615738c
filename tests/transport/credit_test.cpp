#include "transport/channel_credit.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <random>

namespace viaduct::transport {
namespace {

// Two windows exchanging frames through in-flight queues, driven at random: the invariant is that
// no side ever has more frames in flight towards its peer than the peer has receives posted.
TEST(CreditWindow, RandomTraffic_NeverOverrunsAndNeverDeadlocks) {
  constexpr std::uint32_t kSlots = 8;
  CreditWindow w[2] = {CreditWindow(kSlots, kSlots), CreditWindow(kSlots, kSlots)};
  std::deque<std::uint16_t> wire[2];  // wire[i]: frames from i to 1-i, carrying credits
  std::uint32_t posted[2] = {kSlots, kSlots};
  std::mt19937 rng(7);
  std::uint64_t data_sent = 0;
  for (int step = 0; step < 200000; ++step) {
    int side = static_cast<int>(rng() % 2);
    int action = static_cast<int>(rng() % 3);
    if (action == 0 && w[side].can_send_data()) {
      wire[side].push_back(w[side].on_send());
      ++data_sent;
    } else if (action == 1 && !wire[1 - side].empty()) {
      // Side receives a frame from its peer and re-posts the slot.
      ASSERT_GT(posted[side], 0u) << "frame arrived with no receive posted";
      --posted[side];
      ASSERT_TRUE(w[side].on_credits_returned(wire[1 - side].front()));
      wire[1 - side].pop_front();
      ++posted[side];
      w[side].on_slot_reposted();
    }
    if (w[side].should_send_credit()) wire[side].push_back(w[side].on_send());
    ASSERT_LE(wire[side].size(), kSlots);
  }
  EXPECT_GT(data_sent, 10000u);
}

TEST(CreditWindow, LastCreditReservedForCreditReturn) {
  CreditWindow w(2, 4);
  EXPECT_TRUE(w.can_send_data());
  (void)w.on_send();
  EXPECT_FALSE(w.can_send_data());  // one credit left: reserved
  w.on_slot_reposted();
  w.on_slot_reposted();
  EXPECT_TRUE(w.should_send_credit());
  EXPECT_EQ(w.on_send(), 2);
  EXPECT_EQ(w.send_credits(), 0u);
}

// A peer returning credits it never held is refused and changes nothing; before, the count grew
// past the peer's receive slots (overrunning them) and, repeated, wrapped.
TEST(CreditWindow, MoreCreditsReturnedThanGranted_RefusedNoWrap) {
  CreditWindow w(8, 8);
  EXPECT_EQ(w.in_use(), 0u);
  EXPECT_FALSE(w.on_credits_returned(1));  // nothing was sent: nothing may come back
  EXPECT_EQ(w.send_credits(), 8u);
  (void)w.on_send();
  (void)w.on_send();
  (void)w.on_send();
  EXPECT_EQ(w.in_use(), 3u);
  EXPECT_FALSE(w.on_credits_returned(4));
  EXPECT_FALSE(w.on_credits_returned(0xffff));
  EXPECT_EQ(w.send_credits(), 5u);
  EXPECT_TRUE(w.on_credits_returned(2));
  EXPECT_TRUE(w.on_credits_returned(1));
  EXPECT_EQ(w.send_credits(), 8u);
  EXPECT_FALSE(w.on_credits_returned(1));
  // However often a peer tries, the count never passes its receive slots.
  for (int i = 0; i < 100000; ++i) (void)w.on_credits_returned(0xffff);
  EXPECT_EQ(w.send_credits(), 8u);
}

}  // namespace
}  // namespace viaduct::transport
