#include "transport/address.hpp"

#include <cctype>
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

namespace {

// HOST is validated, not just split: anything parse() accepts must print back (to_string) to a
// URI that parses to the same Address. A loose split let `fake://[[]:0` through with host "[",
// which printed as `fake://[:0`, which parse() then refused (names travel between processes as
// strings, so such an address broke the peer that received it).
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

// A name or IPv4 address: letters, digits, '-', '.', '_'.
bool valid_plain_host(std::string_view host) {
  if (host.empty()) return false;
  for (char c : host) {
    if (!is_name_char(c)) return false;
  }
  return true;
}

// The inside of [brackets]: an IPv6 literal (hex digits, ':', '.', and an optional %zone). It must
// contain a ':' so that to_string() brackets it again.
bool valid_bracketed_host(std::string_view host) {
  if (host.find(':') == std::string_view::npos) return false;
  for (char c : host) {
    if (!is_name_char(c) && c != ':' && c != '%') return false;
  }
  return true;
}

}  // namespace

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
    if (host.empty()) return bad("empty host");
    if (!valid_bracketed_host(host)) return bad("[HOST] must be an IPv6 address");
    rest = rest.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return bad("missing :PORT");
    port = rest.substr(1);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("missing :PORT");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("IPv6 hosts need [brackets]");
    if (host.empty()) return bad("empty host");
    if (!valid_plain_host(host)) return bad("HOST may hold only letters, digits, '-', '.', '_'");
  }
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
