// A bound UDP socket (RAII) and IPv4/IPv6 "host:port" endpoints, shared by the lookup client and
// the responder.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/status.hpp"

namespace viaduct::failover {

struct UdpEndpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  // "HOST:PORT" or "[V6]:PORT"; HOST must be a numeric address (no name resolution on this path).
  static Result<UdpEndpoint> parse(std::string_view text);
  static Result<UdpEndpoint> from(std::string_view host, std::uint16_t port);
  [[nodiscard]] std::string to_string() const;
  [[nodiscard]] std::string host() const;
  [[nodiscard]] std::uint16_t port() const;
  // Same family, address and port (what a reply's source is checked against).
  [[nodiscard]] bool same_as(const UdpEndpoint& other) const;
};

// "HOST:PORT[,HOST:PORT...]" (empty items skipped); an error names the item that does not parse,
// and an empty list is an error.
Result<std::vector<UdpEndpoint>> parse_endpoint_list(std::string_view text);

class UdpSocket {
 public:
  UdpSocket() = default;
  ~UdpSocket();
  UdpSocket(UdpSocket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  UdpSocket& operator=(UdpSocket&& other) noexcept;
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  // Bound to `local` (port 0: any); non-blocking.
  static Result<UdpSocket> bind(const UdpEndpoint& local);
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] UdpEndpoint local() const;
  Status send_to(std::span<const std::byte> data, const UdpEndpoint& to) const;
  // Reads one datagram into `buffer` and returns its real length, which exceeds buffer.size() if
  // it was truncated, and is 0 for an empty datagram (a valid UDP datagram: the caller decides
  // what it means, and must go on reading). Nothing waiting is the error kWouldBlock, so that it
  // can never be mistaken for an empty datagram. `from` is filled in.
  Result<std::size_t> receive(std::span<std::byte> buffer, UdpEndpoint* from) const;
  // Waits until readable or timeout (false on timeout).
  bool wait_readable(int timeout_ms) const;

 private:
  int fd_ = -1;
};

}  // namespace viaduct::failover
