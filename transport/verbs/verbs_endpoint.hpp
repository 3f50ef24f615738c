// The verbs VI: one RC queue pair on an rdma_cm id, with its own CQ, completion channel and CM
// event channel, so each VI sees only its own completions and its own disconnects.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "transport/domain.hpp"
#include "transport/verbs/verbs_cm.hpp"
#include "transport/verbs/verbs_domain_core.hpp"
#include "transport/verbs/verbs_resources.hpp"

namespace viaduct::transport::verbs {

class VerbsVi;

class VerbsCompletionQueue final : public CompletionQueue {
 public:
  explicit VerbsCompletionQueue(VerbsVi& vi) : vi_(vi) {}
  std::size_t poll(std::span<Completion> out) override;
  Status wait(int timeout_ms) override;
  [[nodiscard]] int wait_fd() const override;
  bool arm() override;

 private:
  VerbsVi& vi_;
};

// Not thread-safe: one thread drives a VI (posting and polling), as with the other back ends.
class VerbsVi final : public VirtualInterface {
  struct Key {};  // keeps construction to create()

 public:
  // Creates the CQ and QP on `id` (already address- and route-resolved, or a connect request).
  static Result<std::unique_ptr<VerbsVi>> create(std::shared_ptr<DomainCore> core,
                                                 EventChannelPtr cm_channel, CmIdPtr id,
                                                 const ViOptions& options);
  VerbsVi(Key, std::shared_ptr<DomainCore> core, EventChannelPtr cm_channel, CmIdPtr id);
  ~VerbsVi() override;
  VerbsVi(const VerbsVi&) = delete;
  VerbsVi& operator=(const VerbsVi&) = delete;

  // Connection set-up, used by connect and accept.
  [[nodiscard]] rdma_cm_id* cm_id() const { return id_.get(); }
  void set_peer_private_data(std::vector<std::byte> data) { peer_private_data_ = std::move(data); }
  // Waits for ESTABLISHED. `active`: the peer's reply is framed (accept data), and a reject
  // carries a framed reason that goes to *reject_data.
  Status wait_established(const Deadline& deadline, bool active,
                          std::vector<std::byte>* reject_data);

  Status post_send(std::span<const Descriptor> descs, std::size_t* bad_index) override;
  Status post_recv(std::span<const Descriptor> descs, std::size_t* bad_index) override;
  CompletionQueue& cq() override { return cq_; }
  [[nodiscard]] ViState state() const override { return state_; }
  [[nodiscard]] const Status& error() const override { return error_; }
  [[nodiscard]] std::span<const std::byte> peer_private_data() const override {
    return peer_private_data_;
  }
  [[nodiscard]] std::size_t inline_limit() const override { return inline_limit_; }
  void close() override;
  void abort(Status reason) override;

 private:
  friend class VerbsCompletionQueue;

  // wr_id layout: the sequence number of the work request in its queue, plus this bit for the
  // receive queue. Callers' contexts live in the rings, so every 64-bit context is usable and an
  // error completion (whose opcode field is undefined) still names its queue.
  static constexpr std::uint64_t kRecvQueueBit = 1ULL << 63;
  static constexpr int kStashSize = 16;

  struct Slot {
    std::uint64_t context = 0;
    Opcode opcode = Opcode::kSend;
    bool report = true;  // false: inline send, or the internal signal that frees SQ slots
  };

  Status create_queues(const ViOptions& options);
  Status check_postable() const;
  Status check_segments(const Descriptor& d, bool inline_allowed) const;
  std::size_t poll(std::span<Completion> out);
  Status wait(int timeout_ms);
  bool arm();
  // Turns one work completion into *out; false when it is not reported to the caller.
  bool consume(const ibv_wc& wc, Completion* out);
  void drain_completion_events();
  // Handles DISCONNECTED & co; true if the VI changed state.
  bool process_cm_events();
  void enter_error(Status reason);

  // Declared in creation order so they are destroyed in reverse.
  std::shared_ptr<DomainCore> core_;
  EventChannelPtr cm_channel_;
  CmIdPtr id_;
  CompChannelPtr comp_channel_;
  CqPtr cq_handle_;
  CmQpPtr qp_;
  FileDescriptor epoll_;

  VerbsCompletionQueue cq_{*this};
  ViState state_ = ViState::kConnecting;
  Status error_;
  std::vector<std::byte> peer_private_data_;
  std::size_t inline_limit_ = 0;
  std::uint32_t max_send_sge_ = 0;
  std::uint32_t max_recv_sge_ = 0;

  std::vector<Slot> send_ring_;
  std::uint64_t send_posted_ = 0;
  std::uint64_t send_completed_ = 0;
  std::uint32_t unsignaled_run_ = 0;
  std::uint32_t signal_interval_ = 1;
  std::vector<Slot> recv_ring_;
  std::uint64_t recv_posted_ = 0;
  std::uint64_t recv_completed_ = 0;

  // Completions taken by arm()'s re-check, handed out by the next poll().
  std::array<ibv_wc, kStashSize> stash_{};
  int stash_begin_ = 0;
  int stash_end_ = 0;
  // Busy polling checks the CM channel only every so many empty polls: a read() per poll would
  // dominate the cost of an empty ibv_poll_cq.
  std::uint32_t empty_polls_ = 0;
};

}  // namespace viaduct::transport::verbs
