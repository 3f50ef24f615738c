#include "cluster/host_stall_probe.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

namespace viaduct::cluster {

std::unique_ptr<HostStallProbe> HostStallProbe::start(int priority, int notify_fd,
                                                      unsigned max_cpus) {
  if (priority <= 0) return nullptr;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return nullptr;
  std::unique_ptr<HostStallProbe> probe(new HostStallProbe());  // private constructor
  probe->notify_fd_ = notify_fd;
  for (int cpu = 0; cpu < CPU_SETSIZE && probe->workers_.size() < max_cpus; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    auto w = std::make_unique<Worker>();
    w->cpu = cpu;
    probe->workers_.push_back(std::move(w));
  }
  if (probe->workers_.empty()) return nullptr;
  // Each thread pins itself and raises its own priority; one that may not is a probe that cannot
  // tell anything, and the whole probe is dropped.
  for (auto& w : probe->workers_) {
    w->thread = std::thread([raw = probe.get(), worker = w.get(), priority] {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(worker->cpu, &one);
      sched_param param{};
      param.sched_priority = priority;
      if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) != 0 ||
          pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) != 0) {
        raw->failed_.fetch_add(1);
      }
      // The round is read before the thread counts as started: a poke made as soon as start()
      // returns must find it waiting on an older round. Read later, that first poke was missed
      // (the thread waited for the next one): the test that waits for every answer hung in CI,
      // and a partner link would have taken its first poke for a stalled CPU.
      std::uint64_t seen = raw->round_.load();
      raw->started_.fetch_add(1);
      raw->started_.notify_one();
      raw->run(*worker, seen);
    });
  }
  for (int seen = probe->started_.load(); seen < static_cast<int>(probe->workers_.size());
       seen = probe->started_.load()) {
    probe->started_.wait(seen);
  }
  if (probe->failed_.load() != 0) return nullptr;  // the destructor stops the threads
  return probe;
}

HostStallProbe::~HostStallProbe() {
  stop_.store(true);
  round_.fetch_add(1);
  round_.notify_all();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

void HostStallProbe::run(Worker& w, std::uint64_t seen) {
  while (!stop_.load(std::memory_order_relaxed)) {
    round_.wait(seen);  // futex: no cost until poked
    seen = round_.load();
    if (stop_.load(std::memory_order_relaxed)) return;
    w.answered.store(seen, std::memory_order_release);
    std::uint64_t one = 1;
    (void)!::write(notify_fd_, &one, sizeof(one));
  }
}

std::uint64_t HostStallProbe::poke() {
  std::uint64_t round = round_.fetch_add(1) + 1;
  round_.notify_all();
  return round;
}

bool HostStallProbe::all_answered(std::uint64_t round) const {
  for (const auto& w : workers_) {
    if (w->answered.load(std::memory_order_acquire) < round) return false;
  }
  return true;
}

}  // namespace viaduct::cluster
