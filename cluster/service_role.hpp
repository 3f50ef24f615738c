// The active/passive role of a server instance for one service name, as a small state machine of
// pure transitions (tested without I/O, like eRPC's SessionState).
//
// Invariant: at most one active per name at a time, decided by the epoch. A takeover makes the
// new active's epoch one more than any epoch it has seen; an active that learns of a higher epoch
// (from its partner, or a client) steps down at once, before serving anything else.
#pragma once

#include <cstdint>
#include <string_view>

namespace viaduct::cluster {

enum class Role : std::uint8_t { kPassive, kActive };
std::string_view role_name(Role role);

struct RoleState {
  Role role = Role::kPassive;
  std::uint64_t epoch = 0;  // the epoch this instance holds (active) or last saw (passive)
};

enum class RoleEvent : std::uint8_t {
  kNone,
  kTookOver,     // passive → active
  kSteppedDown,  // active → passive
};

// The partner answered a ping (or pinged us) with its role and epoch.
// `yield_on_tie`: this instance is the one to step down if both claim the same epoch as active
// (a misconfiguration: both started active); callers derive it from an order on the two
// instances' addresses, so exactly one of them yields.
RoleEvent on_partner_heard(RoleState& state, bool partner_active, std::uint64_t partner_epoch,
                           bool yield_on_tie);
// The active partner has been silent past the takeover deadline (or was never reachable).
RoleEvent on_partner_silent(RoleState& state);
// A client presented an epoch newer than ours: someone else became active meanwhile.
RoleEvent on_newer_epoch_seen(RoleState& state, std::uint64_t epoch);

}  // namespace viaduct::cluster
