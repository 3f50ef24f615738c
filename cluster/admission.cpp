#include "cluster/admission.hpp"

#include <cstring>

#include "cluster/partner_protocol.hpp"

namespace viaduct::cluster {

namespace {
void set_reason(std::vector<std::byte>* reason, const char* text) {
  reason->resize(std::strlen(text));
  std::memcpy(reason->data(), text, reason->size());
}
}  // namespace

bool admit_hello(std::span<const std::byte> hello_app, const AdmissionFacts& facts,
                 std::vector<std::byte>* reason) {
  auto hello = decode_hello_app(hello_app);
  if (!hello || hello->name != facts.name) {
    set_reason(reason, kRejectWrongName);
    return false;
  }
  if (hello->kind == HelloKind::kPartner) {
    // Proves itself in its first requests (cluster/member_auth.hpp) or is cut off.
    return facts.has_partner;
  }
  if (hello->kind == HelloKind::kWarm) {
    // A client's standby connection: held while passive (its requests get not-active), served
    // like any client once this instance takes over. Pointless to an active.
    if (facts.role == Role::kPassive) return true;
    set_reason(reason, kRejectNotActive);
    return false;
  }
  if (hello->epoch > facts.epoch) {
    // The client has seen a newer epoch than ours. A hint only: a client never changes our epoch
    // (one hello could otherwise take the service down); our partner link tells us if we were
    // replaced. The client looks again.
    set_reason(reason, kRejectStaleEpoch);
    return false;
  }
  if (facts.role != Role::kActive) {
    set_reason(reason, kRejectNotActive);
    return false;
  }
  return true;
}

MemberTable::Step MemberTable::on_request(transport::Channel& channel,
                                          const transport::IncomingRequest& request,
                                          const ClusterKey& key, std::string_view name,
                                          std::int64_t now_ns) {
  auto [it, fresh] = members_.try_emplace(&channel);
  if (fresh) it->second.since_ns = now_ns;
  Member& member = it->second;
  if (member.handshake.authenticated()) return Step::kAuthenticated;
  if (!member.handshake.handle(channel, request.request_id, request.payload, key, name)) {
    (void)channel.respond(request.request_id, {}, kAppStatusBadRequest);
    return Step::kRefused;
  }
  return Step::kHandshaking;
}

bool MemberTable::forget(const transport::Channel& gone) {
  auto it = members_.find(&gone);
  if (it == members_.end()) return false;
  bool authenticated = it->second.handshake.authenticated();
  members_.erase(it);
  return authenticated;
}

void MemberTable::expired(std::int64_t now_ns, std::int64_t deadline_ns,
                          std::vector<const transport::Channel*>& out) const {
  for (const auto& [channel, member] : members_) {
    if (!member.handshake.authenticated() && now_ns - member.since_ns > deadline_ns) {
      out.push_back(channel);
    }
  }
}

}  // namespace viaduct::cluster
