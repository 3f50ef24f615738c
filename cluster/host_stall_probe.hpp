// Is every CPU of this host running right now? One real-time thread pinned to each CPU the process
// may use sleeps until poked, then reports that it ran; a CPU whose thread does not report within
// a millisecond or two is not running anything (a hypervisor has descheduled that virtual CPU, or
// an interrupt storm holds it).
//
// Why: on a virtual machine the hypervisor takes CPUs away (steal time). Measured on the 2-vCPU
// CI machine beside `stress-ng --cpu 4`: a SCHED_FIFO thread pinned to each vCPU overslept by
// 5-11 ms about 5 times in 120 s, with steal ticks counted at each event; once every few minutes
// the stall exceeds the 30 ms takeover deadline. A partner on the stalled vCPU is then silent,
// exactly as if frozen, while the passive's own link thread kept running and saw no pause of its
// own: a false takeover. The kernel accounts steal only once the vCPU runs again, too late for
// the decision; only a thread that must run on that CPU tells, while it happens.
//
// The partner link pokes the probe only while its partner is silent (after half the takeover
// deadline), so it costs nothing on a healthy pair. Without real-time priority the probe is off:
// the lateness of a normal thread on a busy host says nothing about the host.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace viaduct::cluster {

class HostStallProbe {
 public:
  // Starts one thread per CPU in the process's affinity mask (at most max_cpus), at SCHED_FIFO
  // `priority`. Returns null when real-time priority or pinning is not permitted.
  static std::unique_ptr<HostStallProbe> start(int priority, int notify_fd, unsigned max_cpus = 64);
  ~HostStallProbe();
  HostStallProbe(const HostStallProbe&) = delete;
  HostStallProbe& operator=(const HostStallProbe&) = delete;

  // Asks every CPU to report; each reply writes to notify_fd (an eventfd). Returns the round.
  std::uint64_t poke();
  // Every CPU's thread has run since `round` was poked.
  [[nodiscard]] bool all_answered(std::uint64_t round) const;
  [[nodiscard]] std::size_t cpus() const { return workers_.size(); }

 private:
  HostStallProbe() = default;
  struct Worker {
    int cpu = 0;
    std::atomic<std::uint64_t> answered{0};
    std::thread thread;
  };
  // Answers every round after `seen` until stopped.
  void run(Worker& w, std::uint64_t seen);

  int notify_fd_ = -1;
  std::atomic<int> started_{0};  // threads that pinned themselves (or failed to)
  std::atomic<int> failed_{0};
  std::atomic<std::uint64_t> round_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace viaduct::cluster
