// libfabric virtual interface: an FI_EP_MSG endpoint with its own EQ (connection events) and CQ
// (send and receive completions), and an epoll fd joining both for blocking waits.
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>

#include "transport/ofi/ofi_common.hpp"
#include "transport/tunables.hpp"

namespace viaduct::transport::ofi {
namespace {

struct FdCloser {
  int fd = -1;
  FdCloser() = default;
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

Opcode opcode_from_flags(std::uint64_t flags) {
  if ((flags & FI_RECV) != 0) return Opcode::kRecv;
  if ((flags & FI_RMA) != 0) return (flags & FI_READ) != 0 ? Opcode::kRdmaRead : Opcode::kRdmaWrite;
  return Opcode::kSend;
}

// How many empty CQ polls between two looks at the EQ. The EQ only matters when the connection
// breaks, and that also shows up as an idle CQ, so checking it on every 64th idle poll costs the
// hot path nothing while a loss is still seen within microseconds of the CQ going quiet.
constexpr unsigned kEqCheckEveryIdlePolls = 64;
// Idle polls after the connection is set up that look for its socket (see readiness_fd).
constexpr unsigned kReadinessLookups = 8;

class OfiVirtualInterface final : public VirtualInterface, public CompletionQueue {
 public:
  explicit OfiVirtualInterface(std::shared_ptr<DomainCore> core) : core_(std::move(core)) {}

  ~OfiVirtualInterface() override {
    if (ep_ && state_ == ViState::kConnected) fi_shutdown(ep_.get(), 0);
  }

  Status open(fi_info* info, const ViOptions& options) {
    auto eq = open_eq(*core_, &eq_fd_);
    if (!eq) return eq.status();
    eq_ = std::move(eq.value());

    std::size_t sq = options.resolved_send_depth();
    std::size_t rq = options.resolved_recv_depth();
    fi_cq_attr cq_attr{};
    cq_attr.size = sq + rq;
    cq_attr.format = FI_CQ_FORMAT_MSG;
    busy_poll_ = options.busy_poll;
    cq_attr.wait_obj = busy_poll_ ? FI_WAIT_NONE : FI_WAIT_FD;
    fid_cq* cq = nullptr;
    int rc = fi_cq_open(core_->domain.get(), &cq_attr, &cq, nullptr);
    if (rc != 0) return fi_status(Code::kResource, "fi_cq_open", rc);
    cq_.reset(cq);
    if (!busy_poll_) {
      rc = fi_control(&cq->fid, FI_GETWAIT, &cq_fd_);
      if (rc != 0) return fi_status(Code::kInternal, "fi_control(FI_GETWAIT) on CQ", rc);
    }

    info->tx_attr->size = sq;
    info->rx_attr->size = rq;
    inline_limit_ = info->tx_attr->inject_size;
    fid_ep* ep = nullptr;
    rc = fi_endpoint(core_->domain.get(), info, &ep, nullptr);
    if (rc != 0) return fi_status(Code::kResource, "fi_endpoint", rc);
    ep_.reset(ep);
    rc = fi_ep_bind(ep, &eq_->fid, 0);
    if (rc != 0) return fi_status(Code::kInternal, "fi_ep_bind(eq)", rc);
    rc = fi_ep_bind(ep, &cq_->fid, FI_TRANSMIT | FI_RECV);
    if (rc != 0) return fi_status(Code::kInternal, "fi_ep_bind(cq)", rc);
    rc = fi_enable(ep);
    if (rc != 0) return fi_status(Code::kInternal, "fi_enable", rc);

    epoll_.fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_.fd < 0) return {Code::kResource, "epoll_create1"};
    for (int fd : {cq_fd_, eq_fd_}) {
      if (fd < 0) continue;
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.fd = fd;
      if (epoll_ctl(epoll_.fd, EPOLL_CTL_ADD, fd, &e) != 0) return {Code::kResource, "epoll_ctl"};
    }
    state_ = ViState::kConnecting;
    return Status::ok();
  }

  // Waits for FI_CONNECTED after fi_connect / fi_accept.
  Status await_connected(int timeout_ms, std::vector<std::byte>* reject_data) {
    for (;;) {
      auto ev = read_cm_event(eq_.get(), timeout_ms);
      if (!ev) {
        state_ = ViState::kError;
        return ev.status();
      }
      Status s = on_setup_event(std::move(ev.value()), reject_data);
      if (s.code() != Code::kWouldBlock) return s;
    }
  }

  // A connection set-up event: OK on FI_CONNECTED, kWouldBlock on one that does not decide.
  Status on_setup_event(CmEvent ev, std::vector<std::byte>* reject_data) {
    if (ev.error != 0) {
      state_ = ViState::kError;
      if (ev.error == FI_ECONNREFUSED) {
        if (reject_data != nullptr) *reject_data = ev.data;
        error_ = {Code::kRejected, ev.data.empty() ? "connection refused (no listener, or rejected)"
                                                   : "connection rejected by peer"};
        return error_;
      }
      error_ = {Code::kConnLost, std::string("unreachable: ") + fi_strerror(ev.error),
                ConnLostCause::kUnreachable};
      return error_;
    }
    if (ev.info != nullptr) fi_freeinfo(ev.info);
    if (ev.event == FI_CONNECTED) {
      peer_data_ = std::move(ev.data);
      state_ = ViState::kConnected;
      return Status::ok();
    }
    if (ev.event == FI_SHUTDOWN) {
      state_ = ViState::kError;
      error_ = {Code::kConnLost, "peer shut down during connection set-up",
                ConnLostCause::kDisconnected};
      return error_;
    }
    return {Code::kWouldBlock, "connection being set up"};
  }

  Status progress_connect() override {
    if (state_ == ViState::kConnected) return Status::ok();
    if (state_ != ViState::kConnecting) {
      return error_.is_ok() ? Status(Code::kConnLost, "connection set-up failed") : error_;
    }
    for (;;) {
      auto ev = read_cm_event(eq_.get(), 0, /*wait=*/false);
      if (!ev) {
        if (ev.status().code() == Code::kTimeout) return {Code::kWouldBlock, "no event yet"};
        state_ = ViState::kError;
        error_ = ev.status();
        return error_;
      }
      Status s = on_setup_event(std::move(ev.value()), nullptr);
      if (s.code() != Code::kWouldBlock) return s;
    }
  }

  fid_ep* ep() { return ep_.get(); }

  // --- VirtualInterface -------------------------------------------------------------------------
  Status post_send(std::span<const Descriptor> descs, std::size_t* bad_index) override {
    for (std::size_t i = 0; i < descs.size(); ++i) {
      ssize_t rc = post_one_send(descs[i]);
      if (rc != 0) {
        if (bad_index != nullptr) *bad_index = i;
        if (rc == -FI_EAGAIN) return {Code::kWouldBlock, "send queue full"};
        return fi_status(Code::kInternal,
                         std::string("post ") + std::string(opcode_name(descs[i].opcode)), rc);
      }
    }
    return Status::ok();
  }

  Status post_recv(std::span<const Descriptor> descs, std::size_t* bad_index) override {
    for (std::size_t i = 0; i < descs.size(); ++i) {
      const Descriptor& d = descs[i];
      ssize_t rc = 0;
      void* ctx = reinterpret_cast<void*>(static_cast<std::uintptr_t>(d.context));
      if (d.segment_count == 1) {
        const DataSegment& s = d.segments[0];
        rc = fi_recv(ep_.get(), s.addr, s.length, desc_of(s), 0, ctx);
      } else {
        iovec iov[kMaxDataSegments];
        void* desc[kMaxDataSegments];
        fill_iov(d, iov, desc);
        rc = fi_recvv(ep_.get(), iov, desc, d.segment_count, 0, ctx);
      }
      if (rc != 0) {
        if (bad_index != nullptr) *bad_index = i;
        if (rc == -FI_EAGAIN) return {Code::kWouldBlock, "receive queue full"};
        return fi_status(Code::kInternal, "fi_recv", rc);
      }
    }
    return Status::ok();
  }

  CompletionQueue& cq() override { return *this; }
  [[nodiscard]] ViState state() const override { return state_; }
  [[nodiscard]] const Status& error() const override { return error_; }
  [[nodiscard]] std::span<const std::byte> peer_private_data() const override { return peer_data_; }
  [[nodiscard]] std::size_t inline_limit() const override { return inline_limit_; }

  void close() override {
    if (state_ == ViState::kConnected) {
      fi_shutdown(ep_.get(), 0);
      state_ = ViState::kClosed;
      error_ = Status(Code::kConnLost, "closed locally", ConnLostCause::kLocalClose);
    }
  }

  void abort(Status reason) override {
    if (state_ == ViState::kConnected || state_ == ViState::kConnecting) {
      fi_shutdown(ep_.get(), 0);
      fail(std::move(reason));
    }
  }

  // --- CompletionQueue --------------------------------------------------------------------------
  std::size_t poll(std::span<Completion> out) override {
    std::array<fi_cq_msg_entry, 16> entries;
    std::size_t want = std::min(out.size(), entries.size());
    ssize_t rc = fi_cq_read(cq_.get(), entries.data(), want);
    if (rc > 0) {
      for (ssize_t i = 0; i < rc; ++i) {
        const fi_cq_msg_entry& e = entries[static_cast<std::size_t>(i)];
        out[static_cast<std::size_t>(i)] = {reinterpret_cast<std::uintptr_t>(e.op_context),
                                            opcode_from_flags(e.flags), CompletionStatus::kSuccess,
                                            static_cast<std::uint32_t>(e.len), 0};
      }
      return static_cast<std::size_t>(rc);
    }
    if (rc == -FI_EAVAIL && !out.empty()) {
      fi_cq_err_entry err{};
      if (fi_cq_readerr(cq_.get(), &err, 0) > 0) {
        if (err.err == FI_ECANCELED && state_ == ViState::kConnected) {
          // The provider cancels what was posted when the connection drops under it; the
          // FI_SHUTDOWN that says so may still be queued on the EQ.
          check_eq();
          fail({Code::kConnLost, "connection closed by peer (posted work cancelled)",
                ConnLostCause::kDisconnected});
        }
        bool flushed = err.err == FI_ECANCELED || state_ != ViState::kConnected;
        out[0] = {reinterpret_cast<std::uintptr_t>(err.op_context), opcode_from_flags(err.flags),
                  flushed ? CompletionStatus::kFlushed : CompletionStatus::kError, 0, err.err};
        if (!flushed) {
          fail({Code::kConnLost, std::string("completion error: ") + fi_strerror(err.err),
                ConnLostCause::kCompletionError});
        }
        return 1;
      }
    }
    if ((++idle_polls_ % kEqCheckEveryIdlePolls) == 0) check_eq();
    if (readiness_fd_ < 0 && readiness_lookups_ < kReadinessLookups && busy_poll_ &&
        state_ == ViState::kConnected) {
      ++readiness_lookups_;
      watch_socket_for_readiness();
    }
    return 0;
  }

  Status wait(int timeout_ms) override {
    if (busy_poll_) {
      check_eq();
      return Status::ok();  // nothing to block on: the caller spins
    }
    if (arm()) {
      epoll_event events[2];
      int n = epoll_wait(epoll_.fd, events, 2, timeout_ms);
      if (n == 0) {
        check_eq();
        return {Code::kTimeout, "no completion within " + std::to_string(timeout_ms) + " ms"};
      }
    }
    check_eq();
    return Status::ok();
  }

  [[nodiscard]] int wait_fd() const override { return epoll_.fd; }
  [[nodiscard]] int readiness_fd() const override { return readiness_fd_; }

  bool arm() override {
    if (busy_poll_) return false;
    fid* fids[2] = {&cq_->fid, &eq_->fid};
    return fi_trywait(core_->fabric.get(), fids, 2) == FI_SUCCESS;
  }

 private:
  static void* desc_of(const DataSegment& s) {
    return s.region != nullptr ? s.region->local_desc() : nullptr;
  }
  static void fill_iov(const Descriptor& d, iovec* iov, void** desc) {
    for (std::size_t j = 0; j < d.segment_count; ++j) {
      iov[j] = {d.segments[j].addr, d.segments[j].length};
      desc[j] = desc_of(d.segments[j]);
    }
  }

  ssize_t post_one_send(const Descriptor& d) {
    void* ctx = reinterpret_cast<void*>(static_cast<std::uintptr_t>(d.context));
    fid_ep* ep = ep_.get();
    if (d.segment_count == 1) {
      const DataSegment& s = d.segments[0];
      switch (d.opcode) {
        case Opcode::kSend:
          if (d.inline_data) return fi_inject(ep, s.addr, s.length, 0);
          return fi_send(ep, s.addr, s.length, desc_of(s), 0, ctx);
        case Opcode::kRdmaWrite:
          return fi_write(ep, s.addr, s.length, desc_of(s), 0, d.remote.addr, d.remote.key, ctx);
        case Opcode::kRdmaRead:
          return fi_read(ep, s.addr, s.length, desc_of(s), 0, d.remote.addr, d.remote.key, ctx);
        case Opcode::kRecv:
          return -FI_EINVAL;
      }
    }
    if (d.segment_count == 0 || d.segment_count > kMaxDataSegments) return -FI_EINVAL;
    iovec iov[kMaxDataSegments];
    void* desc[kMaxDataSegments];
    fill_iov(d, iov, desc);
    switch (d.opcode) {
      case Opcode::kSend:
        return fi_sendv(ep, iov, desc, d.segment_count, 0, ctx);
      case Opcode::kRdmaWrite:
        return fi_writev(ep, iov, desc, d.segment_count, 0, d.remote.addr, d.remote.key, ctx);
      case Opcode::kRdmaRead:
        return fi_readv(ep, iov, desc, d.segment_count, 0, d.remote.addr, d.remote.key, ctx);
      case Opcode::kRecv:
        return -FI_EINVAL;
    }
    return -FI_EINVAL;
  }

  // Readiness is the connection's socket alone. The wait fds cannot serve: libfabric's util EQ
  // and CQ leave their signal (a socketpair) set after events that were already queued when they
  // were read (FI_CONNECTED, always), until the next fi_trywait, so they read as ready forever; a
  // server watching a thousand idle channels by them polled all of them all the time. A
  // busy-polled CQ (FI_WAIT_NONE) is polled by the tcp provider through an internal
  // FI_WAIT_POLLFD set, from which the socket is taken once connected; a disconnect makes it
  // readable too. The provider adds the socket to that set lazily, in the first CQ read after
  // FI_CONNECTED, so the first few idle polls look for it. Blocking CQs only offer an epoll fd over
  // socket and signal: no readiness fd (such channels are armed and waited on instead).
  void watch_socket_for_readiness() {
    std::array<pollfd, 8> fds{};
    fi_wait_pollfd set{};
    set.nfds = fds.size();
    set.fd = fds.data();
    if (fi_control(&cq_->fid, FI_GETWAIT, &set) != 0) return;  // not a pollfd set: no readiness
    for (std::size_t i = 0; i < std::min(set.nfds, fds.size()); ++i) {
      // The set also holds the CQ's signal, an AF_UNIX socketpair: only the network socket.
      int domain = 0;
      socklen_t len = sizeof(domain);
      if (getsockopt(fds[i].fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) continue;
      if (domain != AF_INET && domain != AF_INET6) continue;
      readiness_fd_ = fds[i].fd;  // one endpoint, one socket
      return;
    }
  }

  void fail(Status reason) {
    if (state_ == ViState::kError) return;
    state_ = ViState::kError;
    error_ = std::move(reason);
  }

  // Non-blocking look at connection events: FI_SHUTDOWN means the peer is gone.
  void check_eq() {
    if (state_ != ViState::kConnected) return;
    std::uint32_t event = 0;
    alignas(fi_eq_cm_entry) std::byte buf[sizeof(fi_eq_cm_entry) + 256];
    ssize_t rc = fi_eq_read(eq_.get(), &event, buf, sizeof(buf), 0);
    if (rc == -FI_EAVAIL) {
      fi_eq_err_entry err{};
      fi_eq_readerr(eq_.get(), &err, 0);
      fail({Code::kConnLost, std::string("connection error: ") + fi_strerror(err.err),
            ConnLostCause::kEqShutdown});
    } else if (rc > 0 && event == FI_SHUTDOWN) {
      fail({Code::kConnLost, "peer disconnected (FI_SHUTDOWN)", ConnLostCause::kDisconnected});
    }
  }

  // Declared in creation order: destruction closes ep, then cq, then eq (reverse).
  std::shared_ptr<DomainCore> core_;
  FidPtr<fid_eq> eq_;
  FidPtr<fid_cq> cq_;
  FidPtr<fid_ep> ep_;
  FdCloser epoll_;
  int eq_fd_ = -1;
  int cq_fd_ = -1;
  ViState state_ = ViState::kIdle;
  Status error_;
  std::vector<std::byte> peer_data_;
  std::size_t inline_limit_ = 0;
  unsigned idle_polls_ = 0;
  bool busy_poll_ = false;
  int readiness_fd_ = -1;  // the connection's socket, for busy-polled CQs
  unsigned readiness_lookups_ = 0;
};

}  // namespace

Result<std::unique_ptr<VirtualInterface>> make_endpoint(std::shared_ptr<DomainCore> core,
                                                        fi_info* info, const ViOptions& options,
                                                        std::span<const std::byte> private_data,
                                                        bool active, int timeout_ms,
                                                        std::vector<std::byte>* reject_data) {
  auto vi = std::make_unique<OfiVirtualInterface>(std::move(core));
  VIADUCT_RETURN_IF_ERROR(vi->open(info, options));
  if (options.before_connect) VIADUCT_RETURN_IF_ERROR(options.before_connect(*vi));
  int rc = active ? fi_connect(vi->ep(), info->dest_addr, private_data.data(), private_data.size())
                  : fi_accept(vi->ep(), private_data.data(), private_data.size());
  if (rc != 0) {
    return fi_status(Code::kInternal, active ? "fi_connect" : "fi_accept", rc);
  }
  VIADUCT_RETURN_IF_ERROR(vi->await_connected(timeout_ms, reject_data));
  return std::unique_ptr<VirtualInterface>(std::move(vi));
}

Result<std::unique_ptr<VirtualInterface>> start_passive_endpoint(std::shared_ptr<DomainCore> core,
                                                                 fi_info* info,
                                                                 const ViOptions& options,
                                                                 std::span<const std::byte> reply) {
  auto vi = std::make_unique<OfiVirtualInterface>(std::move(core));
  VIADUCT_RETURN_IF_ERROR(vi->open(info, options));
  if (options.before_connect) VIADUCT_RETURN_IF_ERROR(options.before_connect(*vi));
  int rc = fi_accept(vi->ep(), reply.data(), reply.size());
  if (rc != 0) return fi_status(Code::kInternal, "fi_accept", rc);
  return std::unique_ptr<VirtualInterface>(std::move(vi));
}

}  // namespace viaduct::transport::ofi
