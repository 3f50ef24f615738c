#include "cluster/service_role.hpp"

#include <cstdint>

namespace viaduct::cluster {

std::string_view role_name(Role role) {
  return role == Role::kActive ? "active" : "passive";
}

RoleEvent on_newer_epoch_seen(RoleState& state, std::uint64_t epoch) {
  if (epoch <= state.epoch) return RoleEvent::kNone;
  state.epoch = epoch;
  if (state.role == Role::kActive) {
    state.role = Role::kPassive;
    return RoleEvent::kSteppedDown;
  }
  return RoleEvent::kNone;
}

RoleEvent on_partner_heard(RoleState& state, bool partner_active, std::uint64_t partner_epoch,
                           bool yield_on_tie) {
  if (partner_epoch > state.epoch) return on_newer_epoch_seen(state, partner_epoch);
  // Both active with the same epoch cannot come from takeovers (each takeover raises the epoch);
  // it means both instances were configured active. Exactly one yields.
  if (partner_active && state.role == Role::kActive && partner_epoch == state.epoch &&
      yield_on_tie) {
    state.role = Role::kPassive;
    return RoleEvent::kSteppedDown;
  }
  return RoleEvent::kNone;
}

RoleEvent on_partner_silent(RoleState& state) {
  if (state.role == Role::kActive) return RoleEvent::kNone;
  // Epochs never wrap: an instance at the last epoch can no longer take over (2^64 takeovers).
  if (state.epoch == UINT64_MAX) return RoleEvent::kNone;
  state.role = Role::kActive;
  ++state.epoch;
  return RoleEvent::kTookOver;
}

}  // namespace viaduct::cluster
