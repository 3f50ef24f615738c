#include "transport/address.hpp"

#include <charconv>

namespace viaduct::transport {

std::string_view scheme_name(BackendKind kind) {
  switch (kind) {
    case BackendKind::kOfiTcp:
      return "ofi+tcp";
    case BackendKind::kOfiVerbs:
      return "ofi+verbs";
    case BackendKind::kVerbs:
      return "verbs";
    case BackendKind::kFake:
      return "fake";
  }
  return "?";
}

Result<Address> Address::parse(std::string_view uri) {
  auto bad = [&](std::string_view why) {
    return Status(
        Code::kInvalidArgument,
        "bad address '" + std::string(uri) + "': " + std::string(why) +
            " (expected ofi+tcp://HOST:PORT, ofi+verbs://HOST:PORT or verbs://HOST:PORT)");
  };
  auto sep = uri.find("://");
  if (sep == std::string_view::npos) return bad("no scheme");
  auto scheme = uri.substr(0, sep);
  Address a;
  if (scheme == "ofi+tcp") {
    a.backend = BackendKind::kOfiTcp;
  } else if (scheme == "ofi+verbs") {
    a.backend = BackendKind::kOfiVerbs;
  } else if (scheme == "verbs") {
    a.backend = BackendKind::kVerbs;
  } else if (scheme == "fake") {
    a.backend = BackendKind::kFake;
  } else {
    return bad("unknown scheme '" + std::string(scheme) + "'");
  }
  auto rest = uri.substr(sep + 3);
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return bad("missing :PORT");
    port = rest.substr(1);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("missing :PORT");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("IPv6 hosts need [brackets]");
  }
  if (host.empty()) return bad("empty host");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    return bad("port must be 0..65535");
  }
  a.host = std::string(host);
  a.port = static_cast<std::uint16_t>(value);
  return a;
}

std::string Address::to_string() const {
  std::string s(scheme_name(backend));
  s += "://";
  if (host.find(':') != std::string::npos) {
    s += "[" + host + "]";
  } else {
    s += host;
  }
  s += ":" + std::to_string(port);
  return s;
}

}  // namespace viaduct::transport
