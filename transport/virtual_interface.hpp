// The virtual interface (VI): a connected queue pair — a send queue and a receive queue of
// descriptors — with its completion queue and connection state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "transport/completion_queue.hpp"
#include "transport/descriptor.hpp"
#include "transport/status.hpp"

namespace viaduct::transport {

// VIA's VI states. kError is VIA's "Error" state: the connection is lost and every descriptor comes
// back flushed; the only way on is to destroy the VI and connect a new one.
enum class ViState : std::uint8_t { kIdle, kConnecting, kConnected, kError, kClosed };
std::string_view vi_state_name(ViState s);

class VirtualInterface {
 public:
  virtual ~VirtualInterface() = default;

  // Post sends / RDMA writes / RDMA reads. Posting stops at the first descriptor that fails;
  // *bad_index then names it (ibv_post_send's bad_wr) and those before it were posted.
  virtual Status post_send(std::span<const Descriptor> descs, std::size_t* bad_index) = 0;
  virtual Status post_recv(std::span<const Descriptor> descs, std::size_t* bad_index) = 0;

  virtual CompletionQueue& cq() = 0;
  [[nodiscard]] virtual ViState state() const = 0;
  // Why the VI is in kError: kConnLost with its cause. OK while connected.
  [[nodiscard]] virtual const Status& error() const = 0;
  // What the peer carried in its connect (server side) or accept (client side) private data.
  [[nodiscard]] virtual std::span<const std::byte> peer_private_data() const = 0;
  // Largest send that can go with Descriptor::inline_data.
  [[nodiscard]] virtual std::size_t inline_limit() const = 0;
  // Orderly shutdown; the peer sees a disconnect. Idempotent.
  virtual void close() = 0;
  // Mark the VI lost from above (e.g. missed heartbeats, malformed frame): state kError, reason
  // kept, connection torn down so the peer notices too.
  virtual void abort(Status reason) = 0;
  // One non-blocking step of a connection set-up begun by ConnectionRequest::start_accept: OK
  // once connected, kWouldBlock while the handshake is still under way, the failure otherwise.
  virtual Status progress_connect() {
    if (state() == ViState::kConnected) return Status::ok();
    if (state() == ViState::kConnecting) return {Code::kWouldBlock, "connection being set up"};
    return error().is_ok() ? Status(Code::kConnLost, "connection set-up failed") : error();
  }
};

}  // namespace viaduct::transport
