// Transport addresses as URIs: which back end, and where.
//
//   ofi+tcp://HOST:PORT    libfabric `tcp` provider, FI_EP_MSG (works everywhere)
//   ofi+verbs://HOST:PORT  libfabric `verbs` provider, FI_EP_MSG
//   verbs://HOST:PORT      librdmacm + libibverbs, RC queue pairs
//   fake://NAME:PORT       in-process back end for protocol unit tests
//
// HOST is a name, an IPv4 address or a bracketed IPv6 address; PORT 0 asks for any free port
// when listening.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "transport/status.hpp"

namespace viaduct::transport {

enum class BackendKind : std::uint8_t { kOfiTcp, kOfiVerbs, kVerbs, kFake };

std::string_view scheme_name(BackendKind kind);

struct Address {
  BackendKind backend = BackendKind::kOfiTcp;
  std::string host;
  std::uint16_t port = 0;

  static Result<Address> parse(std::string_view uri);
  [[nodiscard]] std::string to_string() const;
  [[nodiscard]] std::string port_string() const { return std::to_string(port); }
  friend bool operator==(const Address&, const Address&) = default;
};

}  // namespace viaduct::transport
