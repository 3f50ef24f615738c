#include "transport/verbs/verbs_endpoint.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "transport/tunables.hpp"

namespace viaduct::transport::verbs {

namespace {

constexpr std::uint32_t kEmptyPollsPerCmCheck = 32;
constexpr std::size_t kPostBatch = 16;

Status set_nonblocking(int fd, const char* what) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return Status(Code::kInternal, errno_text(what));
  }
  return Status::ok();
}

ibv_wr_opcode send_opcode(Opcode op) {
  switch (op) {
    case Opcode::kRdmaWrite:
      return IBV_WR_RDMA_WRITE;
    case Opcode::kRdmaRead:
      return IBV_WR_RDMA_READ;
    default:
      return IBV_WR_SEND;
  }
}

}  // namespace

// ---- VerbsCompletionQueue: the CompletionQueue face of the VI.

std::size_t VerbsCompletionQueue::poll(std::span<Completion> out) {
  return vi_.poll(out);
}
Status VerbsCompletionQueue::wait(int timeout_ms) {
  return vi_.wait(timeout_ms);
}
int VerbsCompletionQueue::wait_fd() const {
  return vi_.epoll_.get();
}
bool VerbsCompletionQueue::arm() {
  return vi_.arm();
}

// ---- set-up and tear-down

VerbsVi::VerbsVi(Key, std::shared_ptr<DomainCore> core, EventChannelPtr cm_channel, CmIdPtr id)
    : core_(std::move(core)), cm_channel_(std::move(cm_channel)), id_(std::move(id)) {}

Result<std::unique_ptr<VerbsVi>> VerbsVi::create(std::shared_ptr<DomainCore> core,
                                                 EventChannelPtr cm_channel, CmIdPtr id,
                                                 const ViOptions& options) {
  auto vi = std::make_unique<VerbsVi>(Key{}, std::move(core), std::move(cm_channel), std::move(id));
  VIADUCT_RETURN_IF_ERROR(vi->create_queues(options));
  return vi;
}

Status VerbsVi::create_queues(const ViOptions& options) {
  ibv_context* context = id_->verbs;
  if (context == nullptr || context != core_->context) {
    return Status(Code::kInvalidArgument,
                  "the connection runs over a different RDMA device than the domain's");
  }
  std::uint32_t send_depth = options.resolved_send_depth();
  std::uint32_t recv_depth = options.resolved_recv_depth();

  comp_channel_.reset(ibv_create_comp_channel(context));
  if (!comp_channel_) return Status(Code::kResource, errno_text("ibv_create_comp_channel"));
  VIADUCT_RETURN_IF_ERROR(set_nonblocking(comp_channel_->fd, "fcntl(O_NONBLOCK) on comp channel"));

  cq_handle_.reset(ibv_create_cq(context, static_cast<int>(send_depth + recv_depth), nullptr,
                                 comp_channel_.get(), 0));
  if (!cq_handle_) return Status(Code::kResource, errno_text("ibv_create_cq"));

  ibv_qp_init_attr attr{};
  attr.send_cq = cq_handle_.get();
  attr.recv_cq = cq_handle_.get();
  attr.qp_type = IBV_QPT_RC;
  attr.sq_sig_all = 0;
  attr.cap.max_send_wr = send_depth;
  attr.cap.max_recv_wr = recv_depth;
  attr.cap.max_send_sge = kMaxDataSegments;
  attr.cap.max_recv_sge = kMaxDataSegments;
  attr.cap.max_inline_data = static_cast<std::uint32_t>(tunables::verbs_inline_bytes.get());
  if (rdma_create_qp(id_.get(), core_->pd.get(), &attr) != 0) {
    return Status(Code::kResource, errno_text("rdma_create_qp"));
  }
  qp_.reset(id_.get());
  // The provider may round the capabilities up; use what it granted.
  inline_limit_ = attr.cap.max_inline_data;
  max_send_sge_ = std::min<std::uint32_t>(attr.cap.max_send_sge, kMaxDataSegments);
  max_recv_sge_ = std::min<std::uint32_t>(attr.cap.max_recv_sge, kMaxDataSegments);
  send_ring_.resize(std::max<std::uint32_t>(attr.cap.max_send_wr, 1));
  recv_ring_.resize(std::max<std::uint32_t>(attr.cap.max_recv_wr, 1));
  signal_interval_ = std::max<std::uint32_t>(static_cast<std::uint32_t>(send_ring_.size()) / 2, 1);

  epoll_ = FileDescriptor(epoll_create1(EPOLL_CLOEXEC));
  if (epoll_.get() < 0) return Status(Code::kResource, errno_text("epoll_create1"));
  for (int fd : {comp_channel_->fd, cm_channel_->fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return Status(Code::kResource, errno_text("epoll_ctl"));
    }
  }
  return Status::ok();
}

VerbsVi::~VerbsVi() {
  if (state_ == ViState::kConnected) rdma_disconnect(id_.get());
  // Every CQ event was acked as it was taken, so ibv_destroy_cq will not block; the members
  // then go in reverse order: QP, CQ, comp channel, id, CM channel.
}

Status VerbsVi::wait_established(const Deadline& deadline, bool active,
                                 std::vector<std::byte>* reject_data) {
  for (;;) {
    CmEvent event;
    Status s = wait_cm_event(cm_channel_.get(), deadline, &event);
    if (s.code() == Code::kTimeout) {
      state_ = ViState::kError;
      error_ = Status(Code::kTimeout, active ? "connect timed out" : "accept timed out");
      return error_;
    }
    VIADUCT_RETURN_IF_ERROR(s);
    switch (event.type) {
      case RDMA_CM_EVENT_ESTABLISHED:
        if (active) peer_private_data_ = unframe_private_data(event.private_data);
        state_ = ViState::kConnected;
        error_ = Status::ok();
        return Status::ok();
      case RDMA_CM_EVENT_REJECTED: {
        state_ = ViState::kError;
        // IB CM reject reason 28 is "consumer defined": the peer's application said no. Anything
        // else (8: invalid service id) means no one listens on that port.
        constexpr int kConsumerReject = 28;
        if (event.status == kConsumerReject) {
          if (reject_data != nullptr) *reject_data = unframe_private_data(event.private_data);
          error_ = Status(Code::kRejected, "connection rejected by the peer");
        } else {
          error_ =
              Status(Code::kRejected, "connection refused (no listener?), IB CM reject reason " +
                                          std::to_string(event.status));
        }
        return error_;
      }
      case RDMA_CM_EVENT_UNREACHABLE:
      case RDMA_CM_EVENT_CONNECT_ERROR:
        state_ = ViState::kError;
        error_ = Status(event.status == -ETIMEDOUT ? Code::kTimeout : Code::kInternal,
                        std::string(active ? "connect" : "accept") +
                            " failed: " + rdma_event_str(event.type) + " (status " +
                            std::to_string(event.status) + ")");
        return error_;
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        state_ = ViState::kError;
        error_ =
            Status(Code::kConnLost,
                   std::string("connection lost while being set up: ") + rdma_event_str(event.type),
                   event.type == RDMA_CM_EVENT_DISCONNECTED ? ConnLostCause::kDisconnected
                                                            : ConnLostCause::kUnreachable);
        return error_;
      default:
        break;  // e.g. CONNECT_RESPONSE is not used with a QP on the id
    }
  }
}

// ---- posting

Status VerbsVi::check_postable() const {
  switch (state_) {
    case ViState::kConnected:
    case ViState::kConnecting:
      return Status::ok();
    case ViState::kError:
      return error_;
    default:
      return Status(Code::kConnLost, "VI is closed", ConnLostCause::kLocalClose);
  }
}

Status VerbsVi::check_segments(const Descriptor& d, bool inline_allowed) const {
  if (d.segment_count > max_send_sge_) {
    return Status(Code::kInvalidArgument, "too many data segments");
  }
  for (std::size_t s = 0; s < d.segment_count; ++s) {
    const DataSegment& seg = d.segments[s];
    if (seg.region == nullptr) {
      if (inline_allowed) continue;  // inline data is copied by the CPU: no lkey needed
      return Status(Code::kInvalidArgument, "data segment without a memory region");
    }
    if (!seg.region->contains(seg.addr, seg.length)) {
      return Status(Code::kInvalidArgument, "data segment outside its memory region");
    }
  }
  return Status::ok();
}

Status VerbsVi::post_send(std::span<const Descriptor> descs, std::size_t* bad_index) {
  std::size_t ignored = 0;
  if (bad_index == nullptr) bad_index = &ignored;
  *bad_index = 0;
  VIADUCT_RETURN_IF_ERROR(check_postable());

  // Chains are built on the stack in batches: posting never allocates.
  std::array<ibv_send_wr, kPostBatch> wrs{};
  std::array<std::array<ibv_sge, kMaxDataSegments>, kPostBatch> sges{};
  std::size_t done = 0;
  while (done < descs.size()) {
    std::size_t n = 0;
    Status invalid;
    for (; n < kPostBatch && done + n < descs.size(); ++n) {
      const Descriptor& d = descs[done + n];
      if (d.opcode == Opcode::kRecv) {
        invalid = Status(Code::kInvalidArgument, "kRecv descriptor posted to the send queue");
        break;
      }
      const bool inline_send = d.inline_data;
      if (inline_send && (d.opcode == Opcode::kRdmaRead || d.total_length() > inline_limit_)) {
        invalid = Status(Code::kInvalidArgument,
                         "inline descriptor is an RDMA read or larger than inline_limit()");
        break;
      }
      invalid = check_segments(d, inline_send);
      if (!invalid.is_ok()) break;
      const std::uint64_t seq = send_posted_ + n;
      if (seq - send_completed_ >= send_ring_.size()) {
        invalid = Status(Code::kResource, "send queue full");
        break;
      }
      ibv_send_wr& wr = wrs[n];
      wr = ibv_send_wr{};
      for (std::size_t s = 0; s < d.segment_count; ++s) {
        const DataSegment& seg = d.segments[s];
        sges[n][s] = ibv_sge{reinterpret_cast<std::uint64_t>(seg.addr), seg.length,
                             seg.region != nullptr ? seg.region->lkey() : 0};
      }
      wr.wr_id = seq;
      wr.sg_list = sges[n].data();
      wr.num_sge = d.segment_count;
      wr.opcode = send_opcode(d.opcode);
      if (d.opcode != Opcode::kSend) {
        wr.wr.rdma.remote_addr = d.remote.addr;
        wr.wr.rdma.rkey = static_cast<std::uint32_t>(d.remote.key);
      }
      Slot& slot = send_ring_[seq % send_ring_.size()];
      slot = Slot{d.context, d.opcode, !inline_send};
      if (inline_send) {
        wr.send_flags = IBV_SEND_INLINE;
        // Unsignaled WRs keep their SQ slots until a later signaled one completes: signal every
        // signal_interval_-th and swallow that completion, so the SQ cannot fill up with them.
        if (++unsignaled_run_ >= signal_interval_) {
          wr.send_flags |= IBV_SEND_SIGNALED;
          unsignaled_run_ = 0;
        }
      } else {
        wr.send_flags = IBV_SEND_SIGNALED;
        unsignaled_run_ = 0;
      }
      if (n > 0) wrs[n - 1].next = &wr;
    }
    if (n > 0) {
      ibv_send_wr* bad = nullptr;
      int rc = ibv_post_send(id_->qp, wrs.data(), &bad);
      if (rc != 0) {
        auto posted = bad != nullptr ? static_cast<std::size_t>(bad - wrs.data()) : 0;
        send_posted_ += posted;
        *bad_index = done + posted;
        return Status(rc == ENOMEM ? Code::kResource : Code::kInternal,
                      errno_text("ibv_post_send", rc));
      }
      send_posted_ += n;
      done += n;
    }
    if (!invalid.is_ok()) {
      *bad_index = done;
      return invalid;
    }
  }
  return Status::ok();
}

Status VerbsVi::post_recv(std::span<const Descriptor> descs, std::size_t* bad_index) {
  std::size_t ignored = 0;
  if (bad_index == nullptr) bad_index = &ignored;
  *bad_index = 0;
  VIADUCT_RETURN_IF_ERROR(check_postable());

  std::array<ibv_recv_wr, kPostBatch> wrs{};
  std::array<std::array<ibv_sge, kMaxDataSegments>, kPostBatch> sges{};
  std::size_t done = 0;
  while (done < descs.size()) {
    std::size_t n = 0;
    Status invalid;
    for (; n < kPostBatch && done + n < descs.size(); ++n) {
      const Descriptor& d = descs[done + n];
      if (d.segment_count > max_recv_sge_) {
        invalid = Status(Code::kInvalidArgument, "too many data segments");
        break;
      }
      invalid = check_segments(d, false);
      if (!invalid.is_ok()) break;
      const std::uint64_t seq = recv_posted_ + n;
      if (seq - recv_completed_ >= recv_ring_.size()) {
        invalid = Status(Code::kResource, "receive queue full");
        break;
      }
      ibv_recv_wr& wr = wrs[n];
      wr = ibv_recv_wr{};
      for (std::size_t s = 0; s < d.segment_count; ++s) {
        const DataSegment& seg = d.segments[s];
        sges[n][s] =
            ibv_sge{reinterpret_cast<std::uint64_t>(seg.addr), seg.length, seg.region->lkey()};
      }
      wr.wr_id = seq | kRecvQueueBit;
      wr.sg_list = sges[n].data();
      wr.num_sge = d.segment_count;
      recv_ring_[seq % recv_ring_.size()] = Slot{d.context, Opcode::kRecv, true};
      if (n > 0) wrs[n - 1].next = &wr;
    }
    if (n > 0) {
      ibv_recv_wr* bad = nullptr;
      int rc = ibv_post_recv(id_->qp, wrs.data(), &bad);
      if (rc != 0) {
        auto posted = bad != nullptr ? static_cast<std::size_t>(bad - wrs.data()) : 0;
        recv_posted_ += posted;
        *bad_index = done + posted;
        return Status(rc == ENOMEM ? Code::kResource : Code::kInternal,
                      errno_text("ibv_post_recv", rc));
      }
      recv_posted_ += n;
      done += n;
    }
    if (!invalid.is_ok()) {
      *bad_index = done;
      return invalid;
    }
  }
  return Status::ok();
}

// ---- completions and connection events

bool VerbsVi::consume(const ibv_wc& wc, Completion* out) {
  Slot slot;
  if ((wc.wr_id & kRecvQueueBit) != 0) {
    std::uint64_t seq = wc.wr_id & ~kRecvQueueBit;
    slot = recv_ring_[seq % recv_ring_.size()];
    recv_completed_ = std::max(recv_completed_, seq + 1);
  } else {
    slot = send_ring_[wc.wr_id % send_ring_.size()];
    // A signaled completion retires every unsignaled WR posted before it.
    send_completed_ = std::max(send_completed_, wc.wr_id + 1);
  }
  if (wc.status != IBV_WC_SUCCESS && state_ == ViState::kConnected) {
    if (wc.status == IBV_WC_WR_FLUSH_ERR) {
      // A flush follows the QP entering the error state; a pending CM event names the cause.
      process_cm_events();
      if (state_ == ViState::kConnected) {
        enter_error(Status(Code::kConnLost, "work request flushed: the QP is in the error state",
                           ConnLostCause::kCompletionError));
      }
    } else {
      enter_error(Status(Code::kConnLost,
                         std::string("work completion error: ") + ibv_wc_status_str(wc.status) +
                             " (" + std::string(opcode_name(slot.opcode)) + ")",
                         ConnLostCause::kCompletionError));
    }
  }
  if (!slot.report) return false;
  out->context = slot.context;
  out->opcode = slot.opcode;
  out->byte_count = wc.byte_len;
  out->provider_error = wc.status == IBV_WC_SUCCESS ? 0 : static_cast<int>(wc.status);
  out->status = wc.status == IBV_WC_SUCCESS        ? CompletionStatus::kSuccess
                : wc.status == IBV_WC_WR_FLUSH_ERR ? CompletionStatus::kFlushed
                                                   : CompletionStatus::kError;
  return true;
}

std::size_t VerbsVi::poll(std::span<Completion> out) {
  std::size_t n = 0;
  while (n < out.size() && stash_begin_ < stash_end_) {
    if (consume(stash_[stash_begin_++], &out[n])) ++n;
  }
  while (n < out.size()) {
    std::array<ibv_wc, kStashSize> wcs;
    int want = static_cast<int>(std::min<std::size_t>(wcs.size(), out.size() - n));
    int got = ibv_poll_cq(cq_handle_.get(), want, wcs.data());
    for (int i = 0; i < got; ++i) {
      if (consume(wcs[i], &out[n])) ++n;
    }
    if (got < want) break;
  }
  if (n == 0 && ++empty_polls_ >= kEmptyPollsPerCmCheck) {
    empty_polls_ = 0;
    process_cm_events();
  }
  return n;
}

void VerbsVi::drain_completion_events() {
  ibv_cq* cq = nullptr;
  void* context = nullptr;
  // The channel fd is non-blocking: this stops at EAGAIN.
  while (ibv_get_cq_event(comp_channel_.get(), &cq, &context) == 0) {
    ibv_ack_cq_events(cq, 1);
  }
}

bool VerbsVi::arm() {
  drain_completion_events();
  if (process_cm_events()) return false;
  if (stash_begin_ < stash_end_) return false;
  if (ibv_req_notify_cq(cq_handle_.get(), 0) != 0) return false;
  // A completion that arrived before the request would raise no event: look once more.
  int got = ibv_poll_cq(cq_handle_.get(), kStashSize, stash_.data());
  if (got > 0) {
    stash_begin_ = 0;
    stash_end_ = got;
    return false;
  }
  return true;
}

Status VerbsVi::wait(int timeout_ms) {
  if (!arm()) return Status::ok();
  std::array<epoll_event, 2> events{};
  int ready = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
  if (ready < 0 && errno != EINTR) return Status(Code::kInternal, errno_text("epoll_wait"));
  if (ready == 0) return Status(Code::kTimeout, "no completion before the timeout");
  drain_completion_events();
  process_cm_events();
  return Status::ok();
}

bool VerbsVi::process_cm_events() {
  bool changed = false;
  CmEvent event;
  while (take_cm_event(cm_channel_.get(), &event).is_ok()) {
    // After a local close the DISCONNECTED event is the echo of our own disconnect.
    if (state_ != ViState::kConnected) continue;
    switch (event.type) {
      case RDMA_CM_EVENT_DISCONNECTED:
        enter_error(Status(Code::kConnLost, "peer disconnected", ConnLostCause::kDisconnected));
        changed = true;
        break;
      case RDMA_CM_EVENT_UNREACHABLE:
        enter_error(Status(Code::kConnLost, "peer unreachable", ConnLostCause::kUnreachable));
        changed = true;
        break;
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        enter_error(Status(Code::kConnLost, "RDMA device removed", ConnLostCause::kUnreachable));
        changed = true;
        break;
      default:
        break;
    }
  }
  return changed;
}

void VerbsVi::enter_error(Status reason) {
  if (state_ == ViState::kError || state_ == ViState::kClosed) return;
  state_ = ViState::kError;
  error_ = std::move(reason);
  // Moves the QP to the error state (outstanding WRs come back flushed) and tells the peer.
  rdma_disconnect(id_.get());
}

void VerbsVi::close() {
  if (state_ == ViState::kClosed || state_ == ViState::kError) return;
  if (state_ == ViState::kConnected) rdma_disconnect(id_.get());
  state_ = ViState::kClosed;
  error_ = Status(Code::kConnLost, "closed locally", ConnLostCause::kLocalClose);
}

void VerbsVi::abort(Status reason) {
  if (state_ == ViState::kError) return;
  const bool was_connected = state_ == ViState::kConnected;
  state_ = ViState::kError;
  error_ = std::move(reason);
  if (was_connected) rdma_disconnect(id_.get());
}

}  // namespace viaduct::transport::verbs
