#include "tools/bench/netns_lab.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace viaduct::bench {
namespace {

constexpr char kIp[] = "/usr/sbin/ip";

// Runs an `ip` command; a failure carries what it printed (it used to be thrown away, so that
// "failed: ip link add ..." never said why).
Status run(const std::string& command) {
  std::string with_output = command + " 2>&1";
  FILE* pipe = popen(with_output.c_str(), "r");
  if (pipe == nullptr) return {Code::kInternal, "cannot run: " + command};
  std::string output;
  char buf[256];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) output += buf;
  int status = pclose(pipe);
  if (status != 0) {
    while (!output.empty() && output.back() == '\n') output.pop_back();
    return {Code::kInternal, "failed: " + command + (output.empty() ? "" : ": " + output)};
  }
  return Status::ok();
}

}  // namespace

std::string NetnsLab::ns(int host) const {
  return host < 0 ? "vdsw" + tag_ : "vdh" + std::to_string(host) + tag_;
}

std::string NetnsLab::host_ip(int host) const {
  return "10.78.0." + std::to_string(host + 2);
}

std::vector<std::string> NetnsLab::exec_prefix(int host) const {
  return {kIp, "netns", "exec", ns(host)};
}

Result<std::unique_ptr<NetnsLab>> NetnsLab::create() {
  if (geteuid() != 0 || access(kIp, X_OK) != 0) {
    return Status(Code::kInvalidArgument, "a cut link needs root and iproute2 (" +
                                              std::string(kIp) + ") for network namespaces");
  }
  std::unique_ptr<NetnsLab> lab(new NetnsLab());  // private constructor
  lab->tag_ = "-" + std::to_string(getpid());
  lab->created_ = true;  // from here on the destructor removes whatever was made
  std::string ip = kIp;
  VIADUCT_RETURN_IF_ERROR(run(ip + " netns add " + lab->ns(-1)));
  VIADUCT_RETURN_IF_ERROR(run(ip + " -n " + lab->ns(-1) + " link add br0 type bridge && " + ip +
                              " -n " + lab->ns(-1) + " link set br0 up"));
  for (int h = 0; h < kHosts; ++h) {
    std::string host_ns = lab->ns(h), sw_end = "s" + std::to_string(h);
    VIADUCT_RETURN_IF_ERROR(run(ip + " netns add " + host_ns));
    // Both ends are created in the switch namespace, then one moves to the host's.
    VIADUCT_RETURN_IF_ERROR(run(ip + " -n " + lab->ns(-1) + " link add " + sw_end +
                                " type veth peer name eth0 netns " + host_ns));
    VIADUCT_RETURN_IF_ERROR(
        run(ip + " -n " + lab->ns(-1) + " link set " + sw_end + " master br0 up"));
    VIADUCT_RETURN_IF_ERROR(run(
        ip + " -n " + host_ns + " addr add " + lab->host_ip(h) + "/24 dev eth0 && " + ip + " -n " +
        host_ns + " link set eth0 up && " + ip + " -n " + host_ns + " link set lo up"));
  }
  return lab;
}

NetnsLab::~NetnsLab() {
  if (!created_) return;
  // Deleting a namespace deletes the veth ends in it, and with them their peers.
  for (int h = -1; h < kHosts; ++h) (void)run(std::string(kIp) + " netns del " + ns(h));
}

Status NetnsLab::enter(int host) const {
  std::string path = "/var/run/netns/" + ns(host);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {Code::kInternal, "open " + path};
  int rc = setns(fd, CLONE_NEWNET);
  close(fd);
  if (rc != 0) return {Code::kInternal, "setns " + path};
  return Status::ok();
}

Status NetnsLab::cut(int host) const {
  return run(std::string(kIp) + " -n " + ns(-1) + " link set s" + std::to_string(host) + " down");
}

Status NetnsLab::mend(int host) const {
  return run(std::string(kIp) + " -n " + ns(-1) + " link set s" + std::to_string(host) + " up");
}

Status NetnsLab::cut_between(int a, int b) const {
  // A locally administered unicast address (02:...) that no interface of the lab carries.
  auto pin = [this](int at, int other) {
    return run(std::string(kIp) + " -n " + ns(at) + " neigh replace " + host_ip(other) +
               " lladdr 02:00:00:00:00:01 dev eth0 nud permanent");
  };
  VIADUCT_RETURN_IF_ERROR(pin(a, b));
  return pin(b, a);
}

Status NetnsLab::mend_between(int a, int b) const {
  auto unpin = [this](int at, int other) {
    return run(std::string(kIp) + " -n " + ns(at) + " neigh del " + host_ip(other) + " dev eth0");
  };
  // Both, even if the first fails: a half-mended pair would still be cut one way.
  Status first = unpin(a, b);
  Status second = unpin(b, a);
  return first.is_ok() ? second : first;
}

}  // namespace viaduct::bench
