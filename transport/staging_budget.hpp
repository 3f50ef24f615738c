// A budget of registered rendezvous staging bytes, shared by every channel of one Domain.
//
// Rendezvous buffers are registered (pinned, on verbs) memory, and how much of it a channel needs
// is decided by its peers: a peer announcing payloads makes us register sinks to read them into, a
// peer asking for large answers makes us register sources to stage them in. Each channel bounds
// its own (channel_max_staging_bytes); this bounds the sum over a process's channels on one
// Domain (domain_max_staging_bytes), so that many peers together cannot pin the machine's memory.
//
// Channels on different threads share a Domain, so the count is atomic. A reservation that does
// not fit fails (the channel waits and retries: a read stays queued, a request is refused with
// kWouldBlock, a response is deferred), and marks the budget starved: every channel then drops the
// idle buffers it keeps for reuse (channel_max_idle_staging_bytes), which is what frees the budget
// when idle caches, not transfers, hold it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "transport/tunable.hpp"

namespace viaduct::transport {

class StagingBudget {
 public:
  // `limit_bytes` is read on every reservation, so a change applies to the next one.
  explicit StagingBudget(const Tunable& limit_bytes) : limit_(&limit_bytes) {}
  StagingBudget(const StagingBudget&) = delete;
  StagingBudget& operator=(const StagingBudget&) = delete;

  [[nodiscard]] bool try_reserve(std::size_t bytes) {
    auto limit = static_cast<std::size_t>(limit_->get());
    std::size_t used = used_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit || used > limit - bytes) {
        starved_.store(true, std::memory_order_relaxed);
        return false;
      }
    } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    starved_.store(false, std::memory_order_relaxed);
    std::size_t peak = peak_.load(std::memory_order_relaxed);
    while (used + bytes > peak &&
           !peak_.compare_exchange_weak(peak, used + bytes, std::memory_order_relaxed)) {
    }
    return true;
  }
  void release(std::size_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

  [[nodiscard]] std::size_t used_bytes() const { return used_.load(std::memory_order_relaxed); }
  // The most ever reserved at once: lets a test show that nothing large was registered.
  [[nodiscard]] std::size_t peak_bytes() const { return peak_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t limit_bytes() const { return static_cast<std::size_t>(limit_->get()); }
  // A reservation failed since the last one that succeeded.
  [[nodiscard]] bool starved() const { return starved_.load(std::memory_order_relaxed); }

 private:
  const Tunable* limit_;
  std::atomic<std::size_t> used_{0};
  std::atomic<std::size_t> peak_{0};
  std::atomic<bool> starved_{false};
};

}  // namespace viaduct::transport
