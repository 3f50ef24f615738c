#include "cluster/service_role.hpp"

#include <gtest/gtest.h>

#include "cluster/partner_protocol.hpp"

namespace viaduct::cluster {
namespace {

TEST(ServiceRole, PassiveTakesOverWithEpochPlusOne) {
  RoleState s{Role::kPassive, 4};
  EXPECT_EQ(on_partner_silent(s), RoleEvent::kTookOver);
  EXPECT_EQ(s.role, Role::kActive);
  EXPECT_EQ(s.epoch, 5u);
  EXPECT_EQ(on_partner_silent(s), RoleEvent::kNone);  // already active
}

TEST(ServiceRole, ActiveStepsDownOnNewerEpoch_IgnoresOlderOrEqual) {
  RoleState s{Role::kActive, 1};
  EXPECT_EQ(on_partner_heard(s, false, 1, false), RoleEvent::kNone);
  EXPECT_EQ(on_newer_epoch_seen(s, 1), RoleEvent::kNone);
  EXPECT_EQ(on_partner_heard(s, true, 2, false), RoleEvent::kSteppedDown);
  EXPECT_EQ(s.role, Role::kPassive);
  EXPECT_EQ(s.epoch, 2u);
}

TEST(ServiceRole, BothActiveSameEpoch_ExactlyOneYields) {
  RoleState a{Role::kActive, 1};
  RoleState b{Role::kActive, 1};
  auto ea = on_partner_heard(a, true, 1, /*yield_on_tie=*/true);
  auto eb = on_partner_heard(b, true, 1, /*yield_on_tie=*/false);
  EXPECT_EQ(ea, RoleEvent::kSteppedDown);
  EXPECT_EQ(eb, RoleEvent::kNone);
  EXPECT_NE(a.role, b.role);
}

TEST(ServiceRole, PassiveLearnsEpochWithoutChangingRole) {
  RoleState s{Role::kPassive, 0};
  EXPECT_EQ(on_partner_heard(s, true, 7, false), RoleEvent::kNone);
  EXPECT_EQ(s.epoch, 7u);
  EXPECT_EQ(s.role, Role::kPassive);
  EXPECT_EQ(on_partner_silent(s), RoleEvent::kTookOver);
  EXPECT_EQ(s.epoch, 8u);  // never reuses an epoch it has seen
}

TEST(PartnerProtocol, HelloAndPing_RoundTripAndRejectGarbage) {
  auto bytes = encode_hello_app({HelloKind::kClient, 9, "ORDERS"});
  auto h = decode_hello_app(bytes);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->kind, HelloKind::kClient);
  EXPECT_EQ(h->epoch, 9u);
  EXPECT_EQ(h->name, "ORDERS");
  bytes[0] = std::byte{'Z'};
  EXPECT_FALSE(decode_hello_app(bytes).is_ok());
  EXPECT_FALSE(decode_hello_app(std::vector<std::byte>(5)).is_ok());
  std::array<std::byte, kPingBytes> p;
  encode_ping({WireRole::kActive, 42}, p);
  auto ping = decode_ping(p);
  ASSERT_TRUE(ping.is_ok());
  EXPECT_EQ(ping->role, WireRole::kActive);
  EXPECT_EQ(ping->epoch, 42u);
  p[4] = std::byte{9};
  EXPECT_FALSE(decode_ping(p).is_ok());
}

}  // namespace
}  // namespace viaduct::cluster
