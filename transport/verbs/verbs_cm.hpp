// rdma_cm plumbing shared by connect, listen and the VI: event channels polled with deadlines,
// address resolution, and the framing of private data.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "transport/address.hpp"
#include "transport/status.hpp"
#include "transport/verbs/verbs_resources.hpp"

namespace viaduct::transport::verbs {

// "call: strerror(errno)", for messages built right after a failed library call.
std::string errno_text(const char* call, int error_number);
std::string errno_text(const char* call);

class Deadline {
 public:
  explicit Deadline(int timeout_ms)
      : end_(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms)) {}
  // Never 0 while time is left: a 0 timeout means "no wait" to poll() and "default" to rdma_cm.
  [[nodiscard]] int remaining_ms() const;
  [[nodiscard]] bool expired() const { return std::chrono::steady_clock::now() >= end_; }

 private:
  std::chrono::steady_clock::time_point end_;
};

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
};
// `passive`: an address to bind (empty host or "*" means any).
Result<SocketAddress> resolve_host(const Address& address, bool passive);

// A channel whose fd is non-blocking, so readiness is polled with a deadline and a read never
// stalls an event loop.
Result<EventChannelPtr> make_event_channel();
Result<CmIdPtr> make_cm_id(rdma_event_channel* channel);

struct CmEvent {
  rdma_cm_event_type type = RDMA_CM_EVENT_ADDR_ERROR;
  int status = 0;
  rdma_cm_id* id = nullptr;  // for CONNECT_REQUEST: the new id, owned by the receiver
  std::vector<std::byte> private_data;
};
// Take one event off the channel without blocking (kWouldBlock if none); the event is acked
// before return, its contents copied out.
Status take_cm_event(rdma_event_channel* channel, CmEvent* event);
// Wait until the channel has an event or the deadline passes (kTimeout), then take it.
Status wait_cm_event(rdma_event_channel* channel, const Deadline& deadline, CmEvent* event);
// Wait for `expected`; any other event for the id ends the wait with an error naming it.
Status expect_cm_event(rdma_event_channel* channel, const Deadline& deadline,
                       rdma_cm_event_type expected, const char* step);

// IB CM pads the private data of REP and REJ to their full size, so accept replies and reject
// reasons travel with a one-byte length in front; the connect request has no spare byte (56 of
// 56 are the caller's) and arrives zero-padded to kMaxPrivateData.
std::vector<std::byte> frame_private_data(std::span<const std::byte> data);
std::vector<std::byte> unframe_private_data(std::span<const std::byte> framed);

// The local ACK timeout decides how fast a silent peer turns into IBV_WC_RETRY_EXC_ERR.
Status set_ack_timeout(rdma_cm_id* id);

}  // namespace viaduct::transport::verbs
