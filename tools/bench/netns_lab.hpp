// Network namespaces joined by veth pairs on a bridge, for failover trials with a real cut link
// on one machine (needs root and iproute2). Four namespaces: a switch (a bridge) and three hosts
// on 10.78.0.0/24 behind it: .2 and .3 for the two servers, .4 for the client. cut(i) downs
// host i's link at the switch: frames stop both ways, no FIN or RST is sent, and the processes
// behind it keep running, like a pulled cable. cut_between(a, b) cuts only the path between two
// hosts (a partition: both still reach the third), as silently. Everything is created by this
// object and removed when it dies; no traffic leaves the namespaces.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "transport/status.hpp"

namespace viaduct::bench {

class NetnsLab {
 public:
  static constexpr int kHosts = 3;
  static Result<std::unique_ptr<NetnsLab>> create();
  ~NetnsLab();
  NetnsLab(const NetnsLab&) = delete;
  NetnsLab& operator=(const NetnsLab&) = delete;

  [[nodiscard]] std::string host_ip(int host) const;  // host 0..2: 10.78.0.2 ..
  // argv prefix that runs a program inside host i's namespace
  [[nodiscard]] std::vector<std::string> exec_prefix(int host) const;
  // Moves the calling thread into host i's namespace (sockets it opens afterwards live there).
  Status enter(int host) const;
  Status cut(int host) const;
  Status mend(int host) const;
  // Hosts a and b no longer reach each other; each still reaches everyone else. Each one's
  // neighbour entry for the other is pinned to a MAC address nobody has: their frames to each
  // other are sent, flooded by the bridge and dropped by every host as not theirs, so nothing
  // answers (no RST, no ICMP), as when a link between two racks fails. Pinned (permanent), the
  // entry is not corrected by ARP. Connections between them stay open and hang.
  Status cut_between(int a, int b) const;
  // Removes both pinned entries: the next frame resolves the real address again.
  Status mend_between(int a, int b) const;

 private:
  NetnsLab() = default;
  [[nodiscard]] std::string ns(int host) const;
  std::string tag_;  // unique per process: names of namespaces and links
  bool created_ = false;
};

}  // namespace viaduct::bench
