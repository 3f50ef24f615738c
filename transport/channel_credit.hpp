// Credit-based flow control of the channel, as pure logic (no I/O) so tests can drive it.
//
// Each side posts `recv_slots` receives. A sender may only send while it holds a credit for one of
// the peer's posted receives, so it never overruns them (no RNR on verbs, no drop on libfabric).
// The receiver re-posts a slot after consuming it and returns the credit piggybacked on its next
// frame. When it has nothing to send, it returns credits in an explicit kCredit frame once half
// the window is waiting.
//
// Deadlock freedom: the last credit is reserved for kCredit frames, and a kCredit frame is only
// sent when it returns at least one credit. Two sides that both hold only the reserved credit can
// therefore always tell each other about the receives they re-posted, and every kCredit frame
// returns more than the one credit it costs. The threshold is at least 2 so that a lone kCredit
// frame never triggers another: credit-only traffic dies out instead of ping-ponging.
#pragma once

#include <algorithm>
#include <cstdint>

namespace viaduct::transport {

class CreditWindow {
 public:
  CreditWindow() = default;
  CreditWindow(std::uint32_t peer_recv_slots, std::uint32_t own_recv_slots)
      : send_credits_(peer_recv_slots),
        peer_slots_(peer_recv_slots),
        return_threshold_(std::max<std::uint32_t>(2, own_recv_slots / 2)) {}

  // A request/response/rendezvous-done frame may go out.
  [[nodiscard]] bool can_send_data() const { return send_credits_ >= 2; }
  // A kCredit frame should and may go out.
  [[nodiscard]] bool should_send_credit() const {
    return to_return_ >= return_threshold_ && send_credits_ >= 1;
  }
  // Account a frame being sent; returns the credits it carries back to the peer.
  std::uint16_t on_send() {
    --send_credits_;
    auto carried = static_cast<std::uint16_t>(std::min<std::uint32_t>(to_return_, 0xffff));
    to_return_ -= carried;
    return carried;
  }
  // A frame from the peer arrived carrying `returned` credits. False (and nothing changed) when the
  // peer returns more than it holds: the caller must cut the peer off.
  [[nodiscard]] bool on_credits_returned(std::uint16_t returned) {
    if (returned > in_use()) return false;
    send_credits_ += returned;
    return true;
  }
  // Credits the peer holds for frames we sent it: the most it may return.
  [[nodiscard]] std::uint32_t in_use() const { return peer_slots_ - send_credits_; }
  // We re-posted the receive slot a peer frame used; only now may the peer use it again. (Kept
  // apart from on_credits_returned so a reply sent from inside a handler never advertises a slot
  // that is still being read.)
  void on_slot_reposted() { ++to_return_; }
  [[nodiscard]] std::uint32_t send_credits() const { return send_credits_; }
  [[nodiscard]] std::uint32_t to_return() const { return to_return_; }

 private:
  std::uint32_t send_credits_ = 0;
  std::uint32_t peer_slots_ = 0;  // send_credits_ never exceeds it
  std::uint32_t to_return_ = 0;
  std::uint32_t return_threshold_ = 2;
};

}  // namespace viaduct::transport
