// Completion queue of one virtual interface: polled (busy) or waited on (blocking on the provider's
// file descriptor, with a timeout). Each VI owns one CQ for its send and receive queues, like
// eRPC's one-CQ-per-transport; that keeps "which VI did this complete on" free.
#pragma once

#include <cstddef>
#include <span>

#include "transport/descriptor.hpp"
#include "transport/status.hpp"

namespace viaduct::transport {

class CompletionQueue {
 public:
  virtual ~CompletionQueue() = default;
  // Drain up to out.size() completions without blocking; returns how many were written. Also
  // makes progress on connection events: a lost connection shows as flushed/error completions and
  // the VI's state turning kError.
  virtual std::size_t poll(std::span<Completion> out) = 0;
  // Block until a completion or connection event may be ready, or timeout_ms passes
  // (kTimeout). Spurious wake-ups are allowed: callers poll() after.
  virtual Status wait(int timeout_ms) = 0;
  // A file descriptor that turns readable when wait() would return, for epoll across many VIs;
  // call arm() first and block only if it returns true (fi_trywait / ibv_req_notify_cq).
  [[nodiscard]] virtual int wait_fd() const = 0;
  virtual bool arm() = 0;
  // An fd that is readable while the peer has sent something not yet read (or the connection
  // changed), with no arming and whether or not the CQ was opened for blocking: a server watches
  // its idle VIs' fds in one epoll set instead of polling each CQ. Level-triggered; spurious
  // readiness is allowed. -1 when the back end has none (the caller then polls).
  [[nodiscard]] virtual int readiness_fd() const { return -1; }
};

}  // namespace viaduct::transport
