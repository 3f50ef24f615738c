// Who a server lets in, and who a connection speaks for.
//   - admission: decided from the connection's hello alone (name, kind, epoch) and our role;
//   - member connections (hello kind 'P'): each proves it holds the cluster secret in its first
//     requests (cluster/member_auth.hpp), within a deadline, or is cut off;
//   - client identity: exactly-once is keyed by the client id in each request, so a connection's
//     id is fixed by its first request and a connection can never speak for another client.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cluster/member_auth.hpp"
#include "cluster/partner_protocol.hpp"
#include "cluster/service_role.hpp"
#include "transport/channel.hpp"

namespace viaduct::cluster {

struct AdmissionFacts {
  std::string_view name;  // the service's
  Role role = Role::kPassive;
  std::uint64_t epoch = 0;
  bool has_partner = false;  // member connections are only for a server with a partner
};

// Whether a connection with this hello may be accepted; if not, `reason` holds the reject text
// the client reads (failover/service_hello.hpp). A client hello never changes anything here: a
// newer epoch than ours is refused as stale, not adopted.
bool admit_hello(std::span<const std::byte> hello_app, const AdmissionFacts& facts,
                 std::vector<std::byte>* reason);

// Whether a connection is a member's (hello kind 'P'). Runs per request: the hello was validated
// by admit_hello, so its kind byte alone is enough (no decode, no allocation on the serving path).
inline bool is_partner_channel(const transport::Channel& c) {
  auto app = c.peer_hello_app();
  return !app.empty() && app[0] == static_cast<std::byte>(HelloKind::kPartner);
}

class MemberTable {
 public:
  enum class Step : std::uint8_t {
    kAuthenticated,  // the request is a member's: act on it
    kHandshaking,    // it was a handshake step, answered
    kRefused,        // bad handshake: answered with an error; close the connection
  };
  // Every request on a member connection goes through here first.
  Step on_request(transport::Channel& channel, const transport::IncomingRequest& request,
                  const ClusterKey& key, std::string_view name, std::int64_t now_ns);
  // The connection closed: forget it. Returns whether it was an authenticated member.
  bool forget(const transport::Channel& gone);
  // Members that did not prove themselves within `deadline_ns` of their first request.
  void expired(std::int64_t now_ns, std::int64_t deadline_ns,
               std::vector<const transport::Channel*>& out) const;

 private:
  struct Member {
    MemberHandshake handshake;
    std::int64_t since_ns = 0;
  };
  std::unordered_map<const transport::Channel*, Member> members_;
};

class ClientBindings {
 public:
  // Binds the connection to `client_id` on its first request; false if it already speaks for
  // another one (the caller cuts it off).
  bool bind(const transport::Channel& channel, std::uint64_t client_id) {
    auto [bound, fresh] = ids_.try_emplace(&channel, client_id);
    return fresh || bound->second == client_id;
  }
  void forget(const transport::Channel& gone) { ids_.erase(&gone); }

 private:
  std::unordered_map<const transport::Channel*, std::uint64_t> ids_;
};

}  // namespace viaduct::cluster
