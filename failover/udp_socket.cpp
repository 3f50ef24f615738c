#include "failover/udp_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace viaduct::failover {

Result<UdpEndpoint> UdpEndpoint::from(std::string_view host, std::uint16_t port) {
  UdpEndpoint e;
  std::string h(host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&e.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&e.addr);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    e.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    e.len = sizeof(sockaddr_in6);
  } else {
    return Status(Code::kInvalidArgument, "'" + h + "' is not a numeric IPv4/IPv6 address");
  }
  return e;
}

Result<UdpEndpoint> UdpEndpoint::parse(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string_view::npos)
      return Status(Code::kInvalidArgument, "bad endpoint '" + std::string(text) + "'");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Status(Code::kInvalidArgument, "endpoint '" + std::string(text) + "' needs HOST:PORT");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535) {
    return Status(Code::kInvalidArgument,
                  "endpoint '" + std::string(text) + "': port must be 1..65535");
  }
  return from(host, static_cast<std::uint16_t>(value));
}

std::string UdpEndpoint::host() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

std::uint16_t UdpEndpoint::port() const {
  return addr.ss_family == AF_INET ? ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port)
                                   : ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
}

std::string UdpEndpoint::to_string() const {
  return addr.ss_family == AF_INET6 ? "[" + host() + "]:" + std::to_string(port())
                                    : host() + ":" + std::to_string(port());
}

bool UdpEndpoint::same_as(const UdpEndpoint& other) const {
  if (addr.ss_family != other.addr.ss_family) return false;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    const auto* b = reinterpret_cast<const sockaddr_in*>(&other.addr);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&other.addr);
    return a->sin6_port == b->sin6_port &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
  }
  return false;
}

UdpSocket::~UdpSocket() {
  if (fd_ >= 0) ::close(fd_);
}

UdpSocket& UdpSocket::operator=(UdpSocket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

Result<UdpSocket> UdpSocket::bind(const UdpEndpoint& local) {
  UdpSocket s;
  s.fd_ = ::socket(local.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd_ < 0) return Status(Code::kResource, std::string("socket: ") + std::strerror(errno));
  if (::bind(s.fd_, reinterpret_cast<const sockaddr*>(&local.addr), local.len) != 0) {
    return Status(Code::kResource, "bind UDP " + local.to_string() + ": " + std::strerror(errno));
  }
  return s;
}

UdpEndpoint UdpSocket::local() const {
  UdpEndpoint e;
  e.len = sizeof(e.addr);
  getsockname(fd_, reinterpret_cast<sockaddr*>(&e.addr), &e.len);
  return e;
}

Status UdpSocket::send_to(std::span<const std::byte> data, const UdpEndpoint& to) const {
  ssize_t n = ::sendto(fd_, data.data(), data.size(), 0,
                       reinterpret_cast<const sockaddr*>(&to.addr), to.len);
  if (n < 0) return {Code::kResource, "sendto " + to.to_string() + ": " + std::strerror(errno)};
  return Status::ok();
}

Result<std::size_t> UdpSocket::receive(std::span<std::byte> buffer, UdpEndpoint* from) const {
  for (;;) {
    from->len = sizeof(from->addr);
    // MSG_TRUNC: learn the real size, so an oversized datagram is recognised and dropped whole.
    ssize_t n = ::recvfrom(fd_, buffer.data(), buffer.size(), MSG_TRUNC,
                           reinterpret_cast<sockaddr*>(&from->addr), &from->len);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    // No allocation here: an empty message keeps the polling path cheap.
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status(Code::kWouldBlock, {});
    return Status(Code::kResource, std::string("recvfrom: ") + std::strerror(errno));
  }
}

bool UdpSocket::wait_readable(int timeout_ms) const {
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) > 0;
}

Result<std::vector<UdpEndpoint>> parse_endpoint_list(std::string_view text) {
  std::vector<UdpEndpoint> endpoints;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    auto item =
        text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (!item.empty()) {
      auto endpoint = UdpEndpoint::parse(item);
      if (!endpoint) return endpoint.status();
      endpoints.push_back(endpoint.value());
    }
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  if (endpoints.empty()) return Status(Code::kInvalidArgument, "no HOST:PORT in the list");
  return endpoints;
}

}  // namespace viaduct::failover
