// In-process fake back end. Strict where real NICs are strict: a send that finds no posted receive
// fails the connection (RNR), so flow-control bugs show up in unit tests.
#include "transport/fake/fake_domain.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

namespace viaduct::transport::fake {
namespace {

// One mutex for the whole fake network keeps it obviously race-free; speed is not its job.
std::mutex& net_mutex() {
  static std::mutex m;
  return m;
}

struct Side {
  std::deque<Descriptor> recvs;
  std::deque<Completion> completions;
  int event_fd = -1;
  ViState state = ViState::kConnecting;
  Status error;
  std::vector<std::byte> peer_data;
  Side* peer = nullptr;
};

void signal(Side& s) {
  std::uint64_t one = 1;
  (void)!::write(s.event_fd, &one, sizeof(one));
}

void break_side(Side& s, Status why) {
  if (s.state == ViState::kError || s.state == ViState::kClosed) return;
  s.state = ViState::kError;
  s.error = std::move(why);
  for (auto& r : s.recvs)
    s.completions.push_back({r.context, Opcode::kRecv, CompletionStatus::kFlushed});
  s.recvs.clear();
  signal(s);
}

class FakeMemoryRegion final : public MemoryRegion {
 public:
  FakeMemoryRegion(std::byte* d, std::size_t n) : MemoryRegion(d, n) { remote_key_ = 0xFA4E; }
};

class FakeVi final : public VirtualInterface, public CompletionQueue {
 public:
  FakeVi() { side_.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
  ~FakeVi() override {
    {
      std::lock_guard lock(net_mutex());
      if (side_.peer != nullptr) {
        break_side(*side_.peer, {Code::kConnLost, "peer destroyed", ConnLostCause::kDisconnected});
        side_.peer->peer = nullptr;
      }
    }
    ::close(side_.event_fd);
  }
  Side& side() { return side_; }

  Status post_send(std::span<const Descriptor> descs, std::size_t* bad_index) override {
    std::lock_guard lock(net_mutex());
    for (std::size_t i = 0; i < descs.size(); ++i) {
      const Descriptor& d = descs[i];
      if (side_.state != ViState::kConnected || side_.peer == nullptr) {
        if (bad_index != nullptr) *bad_index = i;
        return {Code::kConnLost, "fake VI not connected", ConnLostCause::kDisconnected};
      }
      if (d.opcode == Opcode::kSend) {
        Side& peer = *side_.peer;
        if (peer.recvs.empty()) {
          // A real RC QP would retry RNR and then fail; fail loudly at once.
          Status why(Code::kConnLost, "receiver not ready: send with no posted receive",
                     ConnLostCause::kCompletionError);
          break_side(side_, why);
          break_side(peer, why);
          return Status::ok();
        }
        Descriptor r = peer.recvs.front();
        peer.recvs.pop_front();
        std::size_t off = 0;
        std::size_t room = r.total_length();
        if (d.total_length() > room) {
          Status why(Code::kConnLost, "receive buffer too small", ConnLostCause::kCompletionError);
          break_side(side_, why);
          break_side(peer, why);
          return Status::ok();
        }
        std::size_t dst_seg = 0;
        std::size_t dst_off = 0;
        for (std::size_t s = 0; s < d.segment_count; ++s) {
          auto* src = static_cast<std::byte*>(d.segments[s].addr);
          std::size_t left = d.segments[s].length;
          while (left > 0) {
            std::size_t chunk = std::min<std::size_t>(left, r.segments[dst_seg].length - dst_off);
            std::memcpy(static_cast<std::byte*>(r.segments[dst_seg].addr) + dst_off, src, chunk);
            src += chunk;
            left -= chunk;
            off += chunk;
            dst_off += chunk;
            if (dst_off == r.segments[dst_seg].length) {
              ++dst_seg;
              dst_off = 0;
            }
          }
        }
        peer.completions.push_back({r.context, Opcode::kRecv, CompletionStatus::kSuccess,
                                    static_cast<std::uint32_t>(off)});
        signal(peer);
      } else {
        // RDMA: the "remote address" is a virtual address in this process.
        auto* remote = reinterpret_cast<std::byte*>(d.remote.addr);
        std::size_t off = 0;
        for (std::size_t s = 0; s < d.segment_count; ++s) {
          auto* local = static_cast<std::byte*>(d.segments[s].addr);
          if (d.opcode == Opcode::kRdmaWrite) {
            std::memcpy(remote + off, local, d.segments[s].length);
          } else {
            std::memcpy(local, remote + off, d.segments[s].length);
          }
          off += d.segments[s].length;
        }
      }
      if (!d.inline_data) {
        side_.completions.push_back({d.context, d.opcode, CompletionStatus::kSuccess, 0});
        signal(side_);
      }
    }
    return Status::ok();
  }

  Status post_recv(std::span<const Descriptor> descs, std::size_t* bad_index) override {
    std::lock_guard lock(net_mutex());
    for (std::size_t i = 0; i < descs.size(); ++i) {
      if (side_.state == ViState::kError || side_.state == ViState::kClosed) {
        if (bad_index != nullptr) *bad_index = i;
        return {Code::kConnLost, "fake VI is down", ConnLostCause::kDisconnected};
      }
      side_.recvs.push_back(descs[i]);
    }
    return Status::ok();
  }

  CompletionQueue& cq() override { return *this; }
  [[nodiscard]] ViState state() const override {
    std::lock_guard lock(net_mutex());
    return side_.state;
  }
  [[nodiscard]] const Status& error() const override { return side_.error; }
  [[nodiscard]] std::span<const std::byte> peer_private_data() const override {
    return side_.peer_data;
  }
  [[nodiscard]] std::size_t inline_limit() const override { return 64; }
  void close() override {
    std::lock_guard lock(net_mutex());
    if (side_.peer != nullptr) {
      break_side(*side_.peer, {Code::kConnLost, "peer closed", ConnLostCause::kDisconnected});
      side_.peer->peer = nullptr;
      side_.peer = nullptr;
    }
    if (side_.state == ViState::kConnected) side_.state = ViState::kClosed;
  }
  void abort(Status reason) override {
    std::lock_guard lock(net_mutex());
    if (side_.peer != nullptr) {
      break_side(*side_.peer, {Code::kConnLost, "peer aborted", ConnLostCause::kDisconnected});
      side_.peer->peer = nullptr;
      side_.peer = nullptr;
    }
    break_side(side_, std::move(reason));
  }

  std::size_t poll(std::span<Completion> out) override {
    std::lock_guard lock(net_mutex());
    std::size_t n = 0;
    while (n < out.size() && !side_.completions.empty()) {
      out[n++] = side_.completions.front();
      side_.completions.pop_front();
    }
    return n;
  }
  Status wait(int timeout_ms) override {
    pollfd p{side_.event_fd, POLLIN, 0};
    if (arm() && ::poll(&p, 1, timeout_ms) == 0) return {Code::kTimeout, "fake wait timed out"};
    return Status::ok();
  }
  [[nodiscard]] int wait_fd() const override { return side_.event_fd; }
  bool arm() override {
    std::uint64_t v = 0;
    (void)!::read(side_.event_fd, &v, sizeof(v));
    std::lock_guard lock(net_mutex());
    return side_.completions.empty() && side_.state == ViState::kConnected;
  }

 private:
  Side side_;
};

struct PendingConnect {
  std::vector<std::byte> data;
  FakeVi* client = nullptr;
  bool answered = false;
  bool accepted = false;
  std::vector<std::byte> reply;
};

struct FakeListenerState {
  std::deque<std::shared_ptr<PendingConnect>> queue;
  std::condition_variable cv;
  int event_fd = -1;
};

std::map<std::string, std::shared_ptr<FakeListenerState>>& listeners() {
  static std::map<std::string, std::shared_ptr<FakeListenerState>> m;
  return m;
}
std::condition_variable& answer_cv() {
  static std::condition_variable cv;
  return cv;
}

class FakeRequest final : public ConnectionRequest {
 public:
  explicit FakeRequest(std::shared_ptr<PendingConnect> p) : pending_(std::move(p)) {}
  [[nodiscard]] std::span<const std::byte> private_data() const override { return pending_->data; }
  Result<std::unique_ptr<VirtualInterface>> accept(std::span<const std::byte> reply,
                                                   const ViOptions& options, int) override {
    auto vi = std::make_unique<FakeVi>();
    vi->side().peer_data = pending_->data;
    if (options.before_connect) {
      vi->side().state = ViState::kConnecting;
      VIADUCT_RETURN_IF_ERROR(options.before_connect(*vi));
    }
    std::lock_guard lock(net_mutex());
    if (pending_->client == nullptr) return Status(Code::kConnLost, "connector gave up");
    vi->side().peer = &pending_->client->side();
    pending_->client->side().peer = &vi->side();
    vi->side().state = ViState::kConnected;
    pending_->client->side().state = ViState::kConnected;
    pending_->reply.assign(reply.begin(), reply.end());
    pending_->answered = pending_->accepted = true;
    answer_cv().notify_all();
    return std::unique_ptr<VirtualInterface>(std::move(vi));
  }
  Status reject(std::span<const std::byte> reason) override {
    std::lock_guard lock(net_mutex());
    pending_->reply.assign(reason.begin(), reason.end());
    pending_->answered = true;
    answer_cv().notify_all();
    return Status::ok();
  }

 private:
  std::shared_ptr<PendingConnect> pending_;
};

class FakeListener final : public Listener {
 public:
  FakeListener(Address a, std::shared_ptr<FakeListenerState> s)
      : address_(std::move(a)), state_(std::move(s)) {}
  ~FakeListener() override {
    std::lock_guard lock(net_mutex());
    listeners().erase(address_.to_string());
    ::close(state_->event_fd);
  }
  [[nodiscard]] const Address& address() const override { return address_; }
  [[nodiscard]] int wait_fd() const override { return state_->event_fd; }
  Result<std::unique_ptr<ConnectionRequest>> get_request(int timeout_ms) override {
    std::unique_lock lock(net_mutex());
    if (!state_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                             [&] { return !state_->queue.empty(); })) {
      return Status(Code::kTimeout, "no connection request");
    }
    auto p = state_->queue.front();
    state_->queue.pop_front();
    std::uint64_t v = 0;
    (void)!::read(state_->event_fd, &v, sizeof(v));
    return std::unique_ptr<ConnectionRequest>(std::make_unique<FakeRequest>(std::move(p)));
  }

 private:
  Address address_;
  std::shared_ptr<FakeListenerState> state_;
};

class FakeDomain final : public Domain {
 public:
  [[nodiscard]] BackendKind backend() const override { return BackendKind::kFake; }
  Result<std::unique_ptr<MemoryRegion>> register_memory(void* data, std::size_t size,
                                                        Access) override {
    return std::unique_ptr<MemoryRegion>(
        std::make_unique<FakeMemoryRegion>(static_cast<std::byte*>(data), size));
  }
  Result<std::unique_ptr<Listener>> listen(const Address& local) override {
    static std::uint16_t next_port = 1;
    std::lock_guard lock(net_mutex());
    Address a = local;
    if (a.port == 0) a.port = next_port++;
    if (listeners().count(a.to_string()) != 0) {
      return Status(Code::kResource, "fake address in use: " + a.to_string());
    }
    auto state = std::make_shared<FakeListenerState>();
    state->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    listeners()[a.to_string()] = state;
    return std::unique_ptr<Listener>(std::make_unique<FakeListener>(a, state));
  }
  Result<std::unique_ptr<VirtualInterface>> connect(const Address& remote,
                                                    std::span<const std::byte> private_data,
                                                    const ViOptions& options, int timeout_ms,
                                                    std::vector<std::byte>* reject_data) override {
    auto vi = std::make_unique<FakeVi>();
    if (options.before_connect) VIADUCT_RETURN_IF_ERROR(options.before_connect(*vi));
    auto pending = std::make_shared<PendingConnect>();
    pending->data.assign(private_data.begin(), private_data.end());
    pending->client = vi.get();
    std::unique_lock lock(net_mutex());
    auto it = listeners().find(remote.to_string());
    if (it == listeners().end()) {
      return Status(Code::kRejected, "connection refused (no listener, or rejected)");
    }
    auto state = it->second;
    state->queue.push_back(pending);
    state->cv.notify_all();
    std::uint64_t one = 1;
    (void)!::write(state->event_fd, &one, sizeof(one));
    bool answered = answer_cv().wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                         [&] { return pending->answered; });
    if (!answered) {
      pending->client = nullptr;
      std::erase(state->queue, pending);
      return Status(Code::kTimeout, "connect timed out");
    }
    if (!pending->accepted) {
      if (reject_data != nullptr) *reject_data = pending->reply;
      return Status(Code::kRejected, "connection rejected by peer");
    }
    vi->side().peer_data = pending->reply;
    return std::unique_ptr<VirtualInterface>(std::move(vi));
  }
};

}  // namespace

Result<std::unique_ptr<Domain>> open_domain(const Address&) {
  return std::unique_ptr<Domain>(std::make_unique<FakeDomain>());
}

}  // namespace viaduct::transport::fake
