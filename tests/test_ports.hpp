// Ports for the servers one test process starts. ctest runs each test as its own process, two at a
// time, beside tools that open outgoing connections: a port taken from the kernel's ephemeral range
// can be in use by any connection's local end, and a fixed port by a neighbour test. So the block
// lies below the ephemeral range, starts at a place chosen by the process id, and is probed: every
// port of it must bind for both TCP and UDP, else the next block is tried.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>

namespace viaduct::testing {

// True if `port` binds on every address for `type` (SO_REUSEADDR, as a listener sets it, so a
// connection of an earlier test left in TIME_WAIT does not count as in use).
inline bool port_binds(std::uint16_t port, int type) {
  int fd = ::socket(AF_INET, type, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return bound;
}

// The first port of the kernel's ephemeral range (32768 when it cannot be read).
inline int ephemeral_port_low() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  int high = 0;
  if (in >> low >> high && low > 0) return low;
  return 32768;
}

// The first of kTestPortBlock consecutive free ports for this process, found once and kept (a test
// uses base..base+kTestPortBlock-1 as it likes). The range is
// 20000 up to the ephemeral range, or, with VIADUCT_TEST_PORT_BASE set, the 1000 ports from there
// (for a machine where several people run the suites side by side, each in a range of their own).
constexpr int kTestPortBlock = 20;

inline std::uint16_t test_port_block() {
  static const std::uint16_t first = [] {
    constexpr int count = kTestPortBlock;
    int low = 20000;
    int high = ephemeral_port_low();
    if (const char* from = std::getenv("VIADUCT_TEST_PORT_BASE")) {
      low = std::atoi(from);
      high = low + 1000;
    }
    if (high - low < count) high = low + count;
    int blocks = (high - low) / count;
    int start = static_cast<int>(::getpid() % blocks);
    for (int i = 0; i < blocks; ++i) {
      int base = low + ((start + i) % blocks) * count;
      bool all_free = true;
      for (int p = base; p < base + count && all_free; ++p) {
        all_free = port_binds(static_cast<std::uint16_t>(p), SOCK_STREAM) &&
                   port_binds(static_cast<std::uint16_t>(p), SOCK_DGRAM);
      }
      if (all_free) return static_cast<std::uint16_t>(base);
    }
    return static_cast<std::uint16_t>(low + start * count);  // none free: the servers will say so
  }();
  return first;
}

}  // namespace viaduct::testing
