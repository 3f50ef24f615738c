#include "transport/channel.hpp"
#include "transport/clock.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "transport/tunables.hpp"

namespace viaduct::transport {

namespace tunables {
Tunable channel_recv_slots("channel", "channel_recv_slots", 64, 4, 4096,
                           "receives each side posts = credits its peer starts with");
Tunable channel_eager_threshold_bytes(
    "channel", "channel_eager_threshold_bytes", 16384, 64, 1 << 20,
    "payloads up to this size travel inline; larger ones by RDMA-read rendezvous");
Tunable channel_max_outstanding("channel", "channel_max_outstanding", 1024, 1, 65536,
                                "requests a channel may have in flight (rounded up to 2^n)");
// Also the largest payload a peer may announce: a rendezvous is a request to register and read
// that many bytes, so the default is what an application needs, not what the hardware allows.
Tunable channel_max_message_bytes(
    "channel", "channel_max_message_bytes", 64LL << 20, 1024, 1LL << 40,
    "largest request or response payload, sent or accepted from a peer (at most "
    "channel_max_staging_bytes and domain_max_staging_bytes)");
// RC and libfabric's tcp provider never notice a silent peer on an idle connection (no keep-alive
// in RC; no way to set TCP keepalive on the provider's sockets), so the channel sends its own.
// Only the budget (interval x missed limit) decides how soon a silent peer is declared lost; the
// interval only sets how many heartbeats fill it. Five: one late heartbeat (a sender descheduled
// on a busy host) is not a loss.
//
// The short budget (0.5 s) applies while a side waits on its peer: its calls are unanswered or it
// reads the peer's payload. The peer then sends at the short interval, as it does while it owes
// answers. Idle connections heartbeat at the idle interval and are given its budget (5 s): a
// server with a thousand idle clients sends and reads a thousand heartbeats a second, not the
// 200k that a 10 ms interval on every connection cost (it starved the working clients: `viaduct
// bench crowd`). An idle client loses nothing by hearing late of a frozen server: its next call
// waits on the short budget from the moment it is sent. A crash closes the connection and is
// seen at once either way; a frozen server under load is found sooner still, by the session's
// hang probe (failover_probe_interval_us).
Tunable channel_keepalive_interval_ms(
    "channel", "channel_keepalive_interval_ms", 100, 0, 600000,
    "while calls are unanswered (either way), send a heartbeat after this long without sending "
    "anything (0: keep-alive off)");
Tunable channel_keepalive_idle_interval_ms(
    "channel", "channel_keepalive_idle_interval_ms", 1000, 1, 600000,
    "on an idle connection, send a heartbeat after this long without sending anything");
Tunable channel_keepalive_missed_limit(
    "channel", "channel_keepalive_missed_limit", 5, 2, 100000,
    "declare the peer lost (keepalive_missed) after this many intervals without hearing from it");
// The peer's heartbeats share the connection with bulk data: while we RDMA-read a large payload
// from it, its frames queue behind that payload. So a read in flight widens the silence allowed
// by its size at this floor bandwidth; a peer that hangs mid-transfer is still caught, later.
Tunable channel_keepalive_min_bandwidth_mbps(
    "channel", "channel_keepalive_min_bandwidth_mbps", 10, 1, 1000000,
    "bulk transfers in flight extend the keep-alive budget by their size at this rate (MB/s)");
}  // namespace tunables

namespace {

constexpr unsigned kLivenessCheckEveryPolls = 256;

// Completion contexts: the top bits say which kind of buffer, the rest its index.
constexpr std::uint64_t kTagShift = 60;
constexpr std::uint64_t kTagRecv = 1ULL << kTagShift;
constexpr std::uint64_t kTagSend = 2ULL << kTagShift;
constexpr std::uint64_t kTagRead = 3ULL << kTagShift;
constexpr std::uint64_t kTagMask = 0xFULL << kTagShift;

// request_id = generation << 16 | pending-table index: a late answer to a slot since reused
// carries an old generation and is recognised as late instead of completing the wrong call.
constexpr unsigned kIndexBits = 16;

constexpr std::uint32_t kRendezvousOfRequest = 0;
constexpr std::uint32_t kRendezvousOfResponse = 1;

std::uint32_t round_up_pow2(std::uint32_t v) {
  std::uint32_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

Status Channel::init(Domain& domain, const ChannelOptions& options) {
  domain_ = &domain;
  recv_slots_ = options.recv_slots != 0
                    ? options.recv_slots
                    : static_cast<std::uint32_t>(tunables::channel_recv_slots.get());
  if (recv_slots_ < 4) return {Code::kInvalidArgument, "a channel needs at least 4 receive slots"};
  eager_threshold_ =
      options.eager_threshold != 0
          ? options.eager_threshold
          : static_cast<std::uint32_t>(tunables::channel_eager_threshold_bytes.get());
  if (eager_threshold_ < kRendezvousRefBytes) {
    return {Code::kInvalidArgument, "eager threshold below 24 bytes"};
  }
  // A message must fit the staging budgets, or it could never be staged nor read.
  auto channel_staging = static_cast<std::size_t>(tunables::channel_max_staging_bytes.get());
  max_message_bytes_ = std::min<std::uint64_t>(
      {static_cast<std::uint64_t>(tunables::channel_max_message_bytes.get()), channel_staging,
       domain.incoming_staging().limit_bytes(), domain.outgoing_staging().limit_bytes()});
  max_concurrent_reads_ = static_cast<std::uint32_t>(tunables::channel_max_concurrent_reads.get());
  rendezvous_credits_ = static_cast<std::uint32_t>(tunables::channel_max_rendezvous_requests.get());
  std::uint32_t max_outstanding =
      round_up_pow2(options.max_outstanding != 0
                        ? options.max_outstanding
                        : static_cast<std::uint32_t>(tunables::channel_max_outstanding.get()));
  if (max_outstanding > (1u << kIndexBits)) {
    return {Code::kInvalidArgument, "max_outstanding above 65536"};
  }
  busy_poll_ = options.busy_poll;
  keepalive_interval_ns_ = tunables::channel_keepalive_interval_ms.get() * 1'000'000;
  keepalive_idle_interval_ns_ = std::max(
      keepalive_interval_ns_, tunables::channel_keepalive_idle_interval_ms.get() * 1'000'000);
  keepalive_missed_limit_ = tunables::channel_keepalive_missed_limit.get();
  keepalive_floor_bytes_per_ms_ = tunables::channel_keepalive_min_bandwidth_mbps.get() * 1000;
  last_heard_ns_ = last_spoke_ns_ = steady_now_ns();
  if (options.hello_app.size() > kMaxHelloAppBytes) {
    return {Code::kInvalidArgument, "hello application data over 40 bytes"};
  }
  hello_app_.assign(options.hello_app.begin(), options.hello_app.end());

  std::size_t slot_bytes = kFrameHeaderBytes + eager_threshold_;
  auto recv = BufferSlab::create(domain, slot_bytes, recv_slots_, Access::kLocal);
  if (!recv) return recv.status();
  recv_slab_ = std::move(recv.value());
  auto send = BufferSlab::create(domain, slot_bytes, recv_slots_, Access::kLocal);
  if (!send) return send.status();
  send_slab_ = std::move(send.value());
  auto idle = static_cast<std::size_t>(tunables::channel_max_idle_staging_bytes.get());
  rendezvous_sources_ = std::make_unique<RendezvousPool>(
      domain, Access::kRemoteRead, domain.outgoing_staging(), channel_staging, idle);
  rendezvous_sinks_ = std::make_unique<RendezvousPool>(
      domain, Access::kLocal, domain.incoming_staging(), channel_staging, idle);

  pending_.resize(max_outstanding);
  free_pending_.reserve(max_outstanding);
  for (std::uint32_t i = max_outstanding; i > 0; --i) free_pending_.push_back(i - 1);
  outgoing_.reserve(64);
  reads_.reserve(max_concurrent_reads_);
  return Status::ok();
}

Status Channel::post_all_receives(VirtualInterface& vi) {
  for (std::uint32_t i = 0; i < recv_slots_; ++i) {
    Descriptor d = Descriptor::single(Opcode::kRecv, kTagRecv | i, recv_slab_->slot(i),
                                      static_cast<std::uint32_t>(recv_slab_->slot_bytes()),
                                      &recv_slab_->region());
    VIADUCT_RETURN_IF_ERROR(vi.post_recv({&d, 1}, nullptr));
  }
  return Status::ok();
}

Status Channel::finish_connect(std::unique_ptr<VirtualInterface> vi) {
  ChannelHello peer;
  VIADUCT_RETURN_IF_ERROR(decode_hello(vi->peer_private_data(), &peer));
  if (peer.recv_slots < 4) return {Code::kMalformed, "peer posts fewer than 4 receives"};
  adopt_peer_hello(peer, std::move(vi));
  return Status::ok();
}

void Channel::adopt_peer_hello(const ChannelHello& peer, std::unique_ptr<VirtualInterface> vi) {
  peer_eager_threshold_ = peer.eager_threshold;
  peer_app_.assign(peer.app.begin(), peer.app.end());
  peer_rendezvous_credits_ =
      peer.rendezvous_credits != 0 ? peer.rendezvous_credits : rendezvous_credits_;
  // Both sides send inline up to the lower threshold and by rendezvous above it: a receiver that
  // checked a rendezvous against its own threshold cut off a peer with a lower one.
  limits_ = {eager_threshold_, std::min(eager_threshold_, peer_eager_threshold_),
             max_message_bytes_};
  window_ = CreditWindow(peer.recv_slots, recv_slots_);
  inline_limit_ = vi->inline_limit();
  vi_ = std::move(vi);
}

std::size_t Channel::encode_own_hello(std::span<std::byte> out) const {
  return encode_hello(
      {static_cast<std::uint16_t>(std::min<std::uint32_t>(recv_slots_, 0xffff)), eager_threshold_,
       hello_app_,
       static_cast<std::uint16_t>(std::min<std::uint32_t>(rendezvous_credits_, 0xffff))},
      out);
}

ViOptions Channel::vi_options() {
  ViOptions options;
  options.recv_queue_depth = recv_slots_;
  options.busy_poll = busy_poll_;
  options.before_connect = [this](VirtualInterface& vi) { return post_all_receives(vi); };
  return options;
}

Result<std::unique_ptr<Channel>> Channel::connect(Domain& domain, const Address& remote,
                                                  const ChannelOptions& options, int timeout_ms,
                                                  std::vector<std::byte>* reject_data) {
  std::unique_ptr<Channel> ch(new Channel());  // private constructor
  VIADUCT_RETURN_IF_ERROR(ch->init(domain, options));
  std::byte hello[kMaxPrivateData];
  std::size_t n = ch->encode_own_hello(hello);
  ViOptions vi_options = ch->vi_options();
  auto vi = domain.connect(remote, {hello, n}, vi_options, timeout_ms, reject_data);
  // The address in the error: "refused" alone does not say by whom.
  if (!vi) return vi.status().with_context("connect to " + remote.to_string());
  VIADUCT_RETURN_IF_ERROR(ch->finish_connect(std::move(vi.value())));
  return ch;
}

template <class AcceptVi>
Result<std::unique_ptr<Channel>> Channel::accept_with(Domain& domain, ConnectionRequest& request,
                                                      const ChannelOptions& options,
                                                      AcceptVi&& accept_vi) {
  ChannelHello peer;
  if (Status s = decode_hello(request.private_data(), &peer); !s) {
    (void)request.reject({});
    return s;
  }
  std::unique_ptr<Channel> ch(new Channel());  // private constructor
  VIADUCT_RETURN_IF_ERROR(ch->init(domain, options));
  std::byte hello[kMaxPrivateData];
  std::size_t n = ch->encode_own_hello(hello);
  auto vi = accept_vi(std::span<const std::byte>(hello, n), ch->vi_options());
  if (!vi) return vi.status();
  // The acceptor's VI carries the connector's hello as the request's private data.
  ch->adopt_peer_hello(peer, std::move(vi.value()));
  return ch;
}

Result<std::unique_ptr<Channel>> Channel::accept(Domain& domain, ConnectionRequest& request,
                                                 const ChannelOptions& options, int timeout_ms) {
  return accept_with(domain, request, options,
                     [&](std::span<const std::byte> hello, const ViOptions& vi_options) {
                       return request.accept(hello, vi_options, timeout_ms);
                     });
}

Result<std::unique_ptr<Channel>> Channel::start_accept(Domain& domain, ConnectionRequest& request,
                                                       const ChannelOptions& options) {
  return accept_with(domain, request, options,
                     [&](std::span<const std::byte> hello, const ViOptions& vi_options) {
                       return request.start_accept(hello, vi_options);
                     });
}

Status Channel::progress_accept() {
  Status s = vi_->progress_connect();
  if (s) {
    // The keep-alive clock starts when the connection is up, not when it was requested.
    last_heard_ns_ = last_spoke_ns_ = steady_now_ns();
  } else if (s.code() != Code::kWouldBlock) {
    fail(s);
  }
  return s;
}

Channel::~Channel() {
  if (vi_) vi_->close();
}

void Channel::close() {
  if (!vi_) return;
  vi_->close();
  fail({Code::kConnLost, "channel closed locally", ConnLostCause::kLocalClose});
}

// ---------------------------------------------------------------------------------------------
// Sending

Status Channel::post_frame(std::byte* frame, std::uint32_t length, std::int64_t send_slot) {
  // The credit count is filled in at the last moment, so a frame that waited in the backlog
  // returns every credit freed meanwhile.
  store_le<std::uint16_t>(frame + 4, window_.on_send());
  Descriptor d;
  d.opcode = Opcode::kSend;
  d.segments[0] = {frame, length, send_slot >= 0 ? &send_slab_->region() : nullptr};
  d.segment_count = 1;
  if (send_slot < 0) {
    d.inline_data = true;
  } else {
    d.context = kTagSend | static_cast<std::uint64_t>(send_slot);
  }
  Status s = vi_->post_send({&d, 1}, nullptr);
  if (!s) {
    fail(s);
  } else {
    ++frames_sent_;
  }
  return s;
}

Status Channel::push_backlog(BacklogEntry entry) {
  backlog_.push_back(std::move(entry));
  ++stats_.backlogged;
  return Status::ok();
}

Status Channel::send_control_frame(FrameType type, std::uint64_t request_id,
                                   std::uint32_t app_status) {
  if (!backlog_.empty() || !window_.can_send_data()) {
    return push_backlog({type, 0, 0, request_id, app_status, {}});
  }
  std::byte frame[kFrameHeaderBytes];
  encode_header({type, 0, 0, 0, app_status, request_id}, frame);
  return post_frame(frame, kFrameHeaderBytes, -1);
}

Status Channel::send_data_frame(FrameType type, std::uint64_t request_id, std::uint32_t app_status,
                                std::span<const std::byte> payload) {
  return send_data_frame(type, request_id, app_status, payload, nullptr);
}

// `still_deferred`: set by flush_deferred, which sends the first deferred response; if it still
// cannot be staged it stays where it is and *still_deferred says so.
Status Channel::send_data_frame(FrameType type, std::uint64_t request_id, std::uint32_t app_status,
                                std::span<const std::byte> payload, bool* still_deferred) {
  if (!error_.is_ok()) return error_;
  if (payload.size() > max_message_bytes_) {
    return {Code::kInvalidArgument, "payload of " + std::to_string(payload.size()) +
                                        " bytes over channel_max_message_bytes (" +
                                        std::to_string(max_message_bytes_) + ")"};
  }
  bool is_request = type == FrameType::kRequest;
  bool rendezvous = payload.size() > limits_.rendezvous_above;
  if (rendezvous && is_request && outgoing_requests_ >= peer_rendezvous_credits_) {
    return {Code::kWouldBlock, "the peer's rendezvous credit (" +
                                   std::to_string(peer_rendezvous_credits_) + ") is in use"};
  }
  // Responses wait behind earlier deferred ones: the peer gets them in the order they were given.
  if (rendezvous && !is_request && !deferred_.empty() && still_deferred == nullptr) {
    deferred_.push_back({request_id, app_status, {payload.begin(), payload.end()}});
    ++stats_.responses_deferred;
    return Status::ok();
  }
  auto length = static_cast<std::uint32_t>(kFrameHeaderBytes +
                                           (rendezvous ? kRendezvousRefBytes : payload.size()));
  bool can_send_now = backlog_.empty() && window_.can_send_data();
  std::byte inline_frame[kFrameHeaderBytes + 256];
  bool goes_inline = can_send_now && length <= inline_limit_ && length <= sizeof(inline_frame);
  // Everything that can refuse a request comes before the staging buffer is taken: a request
  // refused with kWouldBlock took it and never gave it back, so every retry registered another.
  std::uint32_t slot = 0;
  bool have_slot = !goes_inline && send_slab_->acquire(&slot);
  if (!goes_inline && !have_slot && is_request) {
    return {Code::kWouldBlock, "all send slots busy"};
  }
  std::byte rendezvous_ref[kRendezvousRefBytes];
  std::uint16_t flags = 0;
  std::span<const std::byte> body = payload;
  std::uint32_t staged_handle = 0;
  if (rendezvous) {
    // Too large to travel inline: stage it in registered memory the peer can read.
    auto handle = rendezvous_sources_->acquire(payload.size());
    if (!handle) {
      if (have_slot) send_slab_->release(slot);
      if (handle.status().code() == Code::kWouldBlock && !is_request) {
        if (still_deferred != nullptr) {
          *still_deferred = true;
          return Status::ok();
        }
        deferred_.push_back({request_id, app_status, {payload.begin(), payload.end()}});
        ++stats_.responses_deferred;
        return Status::ok();
      }
      return handle.status();
    }
    staged_handle = handle.value();
    std::byte* staged = rendezvous_sources_->data(staged_handle);
    std::memcpy(staged, payload.data(), payload.size());
    RemoteSegment seg = rendezvous_sources_->region(staged_handle).remote(staged);
    encode_rendezvous({seg.addr, seg.key, payload.size()}, rendezvous_ref);
    outgoing_.push_back({request_id, staged_handle, !is_request, true});
    if (is_request) ++outgoing_requests_;
    body = {rendezvous_ref, kRendezvousRefBytes};
    flags = kFlagRendezvous;
  }
  FrameHeader header{type,       0,         flags, static_cast<std::uint32_t>(body.size()),
                     app_status, request_id};
  auto write_frame = [&](std::byte* frame) {
    encode_header(header, frame);
    if (!body.empty()) std::memcpy(frame + kFrameHeaderBytes, body.data(), body.size());
  };
  Status s;
  if (goes_inline) {
    write_frame(inline_frame);
    s = post_frame(inline_frame, length, -1);
  } else if (!have_slot) {
    // A response that found every send slot busy: its frame waits in the backlog's own bytes.
    BacklogEntry entry{type, 0, length, request_id, app_status, {}};
    entry.bytes.resize(length);
    write_frame(entry.bytes.data());
    return push_backlog(std::move(entry));
  } else {
    write_frame(send_slab_->slot(slot));
    if (!can_send_now) return push_backlog({type, slot, length, request_id, app_status, {}});
    s = post_frame(send_slab_->slot(slot), length, slot);
  }
  if (!s && rendezvous) {
    // The channel has failed (post_frame said so); still, nothing stays held for a frame that
    // never left.
    std::erase_if(outgoing_, [&](const OutgoingRendezvous& o) {
      return o.active && o.handle == staged_handle && o.request_id == request_id;
    });
    if (is_request) --outgoing_requests_;
    rendezvous_sources_->release(staged_handle);
  }
  return s;
}

// Sends the responses that waited for outgoing staging, in order, as far as the budget allows.
void Channel::flush_deferred() {
  while (!deferred_.empty() && error_.is_ok()) {
    const DeferredResponse& d = deferred_.front();
    bool again = false;
    Status s = send_data_frame(FrameType::kResponse, d.request_id, d.app_status, d.payload, &again);
    if (!s || again) return;
    deferred_.pop_front();
  }
}

void Channel::flush_backlog() {
  while (!backlog_.empty() && error_.is_ok()) {
    BacklogEntry& e = backlog_.front();
    bool is_credit = e.type == FrameType::kCredit;
    if (is_credit ? window_.send_credits() < 1 : !window_.can_send_data()) return;
    if (!e.bytes.empty()) {
      // An overflowed response: it needs a registered slot before it can be posted. If frames
      // queued behind it hold every slot, take the last one's slot (its bytes move to its own
      // buffer): FIFO order must never wait on what stands behind it.
      if (!send_slab_->acquire(&e.send_slot)) {
        auto holder =
            std::find_if(backlog_.rbegin(), std::prev(backlog_.rend()),
                         [](const BacklogEntry& b) { return b.length > 0 && b.bytes.empty(); });
        if (holder == std::prev(backlog_.rend())) return;  // slots are in flight; they come back
        const std::byte* held = send_slab_->slot(holder->send_slot);
        holder->bytes.assign(held, held + holder->length);
        e.send_slot = holder->send_slot;
      }
      std::memcpy(send_slab_->slot(e.send_slot), e.bytes.data(), e.bytes.size());
      e.bytes.clear();
    }
    Status s;
    if (e.length > 0) {
      s = post_frame(send_slab_->slot(e.send_slot), e.length, e.send_slot);
    } else {
      std::byte frame[kFrameHeaderBytes];
      encode_header({e.type, 0, 0, 0, e.app_status, e.request_id}, frame);
      s = post_frame(frame, kFrameHeaderBytes, -1);
    }
    if (!s) return;
    backlog_.pop_front();
  }
}

// Runs after flush_backlog, so a non-empty backlog means data cannot go; a credit frame may then
// jump the queue (it carries no ordering), which is what keeps two backlogged sides from waiting
// on each other forever.
void Channel::maybe_return_credits() {
  if (error_.is_ok() && window_.should_send_credit()) {
    std::byte frame[kFrameHeaderBytes];
    encode_header({FrameType::kCredit, 0, 0, 0, 0, 0}, frame);
    if (post_frame(frame, kFrameHeaderBytes, -1)) ++stats_.credit_frames_sent;
  }
}

Status Channel::call_async(std::span<const std::byte> request, ResponseFn fn, void* user,
                           std::uint64_t* request_id) {
  if (!error_.is_ok()) return error_;
  if (free_pending_.empty()) {
    return {Code::kWouldBlock, "too many requests outstanding"};
  }
  std::uint32_t index = free_pending_.back();
  PendingCall& p = pending_[index];
  ++p.generation;
  p.request_id = (static_cast<std::uint64_t>(p.generation) << kIndexBits) | index;
  p.fn = fn;
  p.user = user;
  p.active = true;
  p.reading = false;
  Status s = send_data_frame(FrameType::kRequest, p.request_id, 0, request);
  if (!s) {
    p.active = false;
    return s;
  }
  free_pending_.pop_back();
  ++outstanding_;
  ++stats_.requests_sent;
  if (request_id != nullptr) *request_id = p.request_id;
  return Status::ok();
}

Status Channel::respond(std::uint64_t request_id, std::span<const std::byte> payload,
                        std::uint32_t app_status) {
  Status s = send_data_frame(FrameType::kResponse, request_id, app_status, payload);
  if (s && owed_answers_ > 0) --owed_answers_;
  return s;
}

Result<std::size_t> Channel::call(std::span<const std::byte> request, std::span<std::byte> response,
                                  int timeout_ms, std::uint32_t* app_status) {
  SyncCall sync;
  sync.out = response;
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::uint64_t id = 0;
  for (;;) {
    Status s = call_async(request, SyncCall::on_response, &sync, &id);
    if (s) break;
    if (s.code() != Code::kWouldBlock) return s;
    if (poll() == 0 && Clock::now() > deadline) return Status(Code::kTimeout, "no request slot");
  }
  unsigned idle = 0;
  while (!sync.done) {
    if (poll() != 0) continue;
    // Reading the clock costs ~20 ns; do it every 256 idle rounds when spinning.
    if (busy_poll_ && (++idle & 255) != 0) continue;
    auto now = Clock::now();
    if (now >= deadline) {
      // Forget the call: a late answer finds a stale generation and is counted, not delivered.
      PendingCall* p = find_pending(id);
      if (p != nullptr) {
        p->active = false;
        free_pending_.push_back(static_cast<std::uint32_t>(id & ((1u << kIndexBits) - 1)));
        --outstanding_;
      }
      return Status(Code::kTimeout, "no response within " + std::to_string(timeout_ms) + " ms");
    }
    if (!busy_poll_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
      (void)wait(static_cast<int>(std::max<std::int64_t>(1, left)));
    }
  }
  return sync.result(app_status);
}

void SyncCall::on_response(void* user, const Response& r) {
  auto* s = static_cast<SyncCall*>(user);
  s->done = true;
  s->status = r.status;
  s->app_status = r.app_status;
  s->length = r.payload.size();
  if (r.payload.size() > s->out.size()) {
    s->status = Status(Code::kResource, "response of " + std::to_string(r.payload.size()) +
                                            " bytes does not fit the " +
                                            std::to_string(s->out.size()) + "-byte buffer");
  } else if (!r.payload.empty()) {
    std::memcpy(s->out.data(), r.payload.data(), r.payload.size());
  }
}

Result<std::size_t> SyncCall::result(std::uint32_t* app_status_out) const {
  if (app_status_out != nullptr) *app_status_out = app_status;
  if (!status) return status;
  return length;
}

// ---------------------------------------------------------------------------------------------
// Progress

std::size_t Channel::poll() {
  if (!vi_) return 0;
  std::array<Completion, 32> completions;
  std::size_t n = vi_->cq().poll(completions);
  for (std::size_t i = 0; i < n; ++i) handle_completion(completions[i]);
  if (n == 0 && error_.is_ok() && vi_->state() != ViState::kConnected) {
    fail(vi_->error().is_ok() ? Status(Code::kConnLost, "connection lost") : vi_->error());
  }
  if (!backlog_.empty()) flush_backlog();
  if (!queued_reads_.empty()) start_queued_reads();
  if (!deferred_.empty()) flush_deferred();
  maybe_return_credits();
  if (++polls_since_check_ >= kLivenessCheckEveryPolls) check_liveness();
  return n;
}

Status Channel::wait(int timeout_ms) {
  int cap = timeout_ms;
  if (keepalive_interval_ns_ > 0) {
    cap = std::min<int>(
        cap, static_cast<int>(std::max<std::int64_t>(1, keepalive_interval_ns_ / 1'000'000)));
  }
  Status s = vi_->cq().wait(cap);
  check_liveness();
  if (!s && s.code() == Code::kTimeout && cap < timeout_ms) return Status::ok();  // our own wake-up
  return s;
}

void Channel::check_liveness() {
  polls_since_check_ = 0;
  trim_idle_staging_if_starved();
  if (keepalive_interval_ns_ == 0 || !error_.is_ok() || !vi_) return;
  std::int64_t now = steady_now_ns();
  if (frames_received_ != seen_received_) {
    seen_received_ = frames_received_;
    last_heard_ns_ = now;
  }
  if (frames_sent_ != seen_sent_) {
    seen_sent_ = frames_sent_;
    last_spoke_ns_ = now;
  }
  // Waiting on the peer: it heartbeats at the short interval while it owes us answers or reads
  // our payload, so the short budget applies, counted from when the wait began at the latest.
  bool waiting = outstanding_ > 0 || inflight_read_bytes_ > 0;
  if (waiting && !was_waiting_) last_heard_ns_ = std::max(last_heard_ns_, now);
  was_waiting_ = waiting;
  // The peer waits on us while we owe it answers or have work of ours under way for it.
  bool owing = owed_answers_ > 0 || work_in_flight();
  std::int64_t heard_interval_ns = waiting ? keepalive_interval_ns_ : keepalive_idle_interval_ns_;
  std::int64_t speak_interval_ns =
      waiting || owing ? keepalive_interval_ns_ : keepalive_idle_interval_ns_;
  std::int64_t allowed_ns =
      heard_interval_ns * keepalive_missed_limit_ +
      static_cast<std::int64_t>(inflight_read_bytes_) / keepalive_floor_bytes_per_ms_ * 1'000'000;
  if (now - last_heard_ns_ > allowed_ns) {
    Status reason(Code::kConnLost,
                  "peer silent for " + std::to_string((now - last_heard_ns_) / 1'000'000) +
                      " ms (" + std::to_string(keepalive_missed_limit_) + " keep-alive intervals" +
                      (waiting ? ", calls unanswered)" : ", idle)"),
                  ConnLostCause::kKeepaliveMissed);
    vi_->abort(reason);
    fail(reason);
    return;
  }
  // A heartbeat uses the reserved credit if need be, like a credit return: it must get through
  // exactly when everything else is stuck.
  if (now - last_spoke_ns_ >= speak_interval_ns && window_.send_credits() >= 1) {
    std::byte frame[kFrameHeaderBytes];
    encode_header({FrameType::kHeartbeat, 0, 0, 0, 0, 0}, frame);
    if (post_frame(frame, kFrameHeaderBytes, -1)) {
      ++stats_.heartbeats_sent;
      seen_sent_ = frames_sent_;
      last_spoke_ns_ = now;
    }
  }
}

void Channel::handle_completion(const Completion& c) {
  std::uint64_t tag = c.context & kTagMask;
  auto index = static_cast<std::uint32_t>(c.context & ~kTagMask);
  if (c.status != CompletionStatus::kSuccess) {
    if (c.status == CompletionStatus::kError) {
      fail(vi_->error().is_ok()
               ? Status(Code::kConnLost, "completion error", ConnLostCause::kCompletionError)
               : vi_->error());
    } else {
      fail(vi_->error().is_ok() ? Status(Code::kConnLost, "descriptors flushed") : vi_->error());
    }
    return;
  }
  if (tag == kTagRecv) {
    handle_frame(index, c.byte_count);
  } else if (tag == kTagSend) {
    send_slab_->release(index);
  } else if (tag == kTagRead) {
    finish_read(index);
  }
}

void Channel::handle_frame(std::uint32_t slot, std::uint32_t bytes) {
  const std::byte* data = recv_slab_->slot(slot);
  FrameHeader h;
  RendezvousRef ref;
  Status s = decode_frame({data, bytes}, limits_, &h, &ref);
  if (!s) {
    protocol_error(s.message());
    return;
  }
  if (!window_.on_credits_returned(h.credits)) {
    protocol_error("peer returned " + std::to_string(h.credits) + " credits but held only " +
                   std::to_string(window_.in_use()));
    return;
  }
  ++frames_received_;
  if ((h.flags & kFlagRendezvous) != 0) {
    on_rendezvous(h, ref);
  } else if (h.type == FrameType::kRequest) {
    deliver_request(h, {data + kFrameHeaderBytes, h.payload_len});
  } else if (h.type == FrameType::kResponse) {
    deliver_response(h, {data + kFrameHeaderBytes, h.payload_len});
  } else if (h.type == FrameType::kRendezvousDone) {
    bool of_response = h.app_status == kRendezvousOfResponse;
    for (auto& o : outgoing_) {
      if (o.active && o.request_id == h.request_id && o.is_response == of_response) {
        rendezvous_sources_->release(o.handle);
        if (!o.is_response) --outgoing_requests_;
        o.active = false;
        break;
      }
    }
    std::erase_if(outgoing_, [](const OutgoingRendezvous& o) { return !o.active; });
  }
  if (!error_.is_ok()) return;
  Descriptor d = Descriptor::single(Opcode::kRecv, kTagRecv | slot, recv_slab_->slot(slot),
                                    static_cast<std::uint32_t>(recv_slab_->slot_bytes()),
                                    &recv_slab_->region());
  if (Status ps = vi_->post_recv({&d, 1}, nullptr); !ps) {
    fail(ps);
    return;
  }
  window_.on_slot_reposted();
}

void Channel::deliver_request(const FrameHeader& h, std::span<const std::byte> payload) {
  ++stats_.requests_received;
  ++owed_answers_;
  if (handler_ == nullptr) {
    static constexpr char kMsg[] = "no request handler";
    (void)respond(h.request_id, std::as_bytes(std::span(kMsg, sizeof(kMsg) - 1)), 0xffffffffu);
    return;
  }
  handler_->on_request(*this, {h.request_id, payload});
}

Channel::PendingCall* Channel::find_pending(std::uint64_t request_id) {
  auto index = static_cast<std::uint32_t>(request_id & ((1u << kIndexBits) - 1));
  if (index >= pending_.size()) return nullptr;
  PendingCall& p = pending_[index];
  if (!p.active || p.request_id != request_id) return nullptr;
  return &p;
}

void Channel::deliver_response(const FrameHeader& h, std::span<const std::byte> payload) {
  PendingCall* p = find_pending(h.request_id);
  if (p == nullptr) {
    ++stats_.late_responses;
    return;
  }
  ResponseFn fn = p->fn;
  void* user = p->user;
  p->active = false;
  free_pending_.push_back(static_cast<std::uint32_t>(p - pending_.data()));
  --outstanding_;
  ++stats_.responses_received;
  if (fn != nullptr) fn(user, {h.request_id, Status::ok(), h.app_status, payload});
}

// A peer announced a payload for us to read. Nothing is allocated here: the announcement is
// checked against what the peer may have outstanding and queued; start_queued_reads() registers a
// sink when a read slot and the staging budgets allow.
void Channel::on_rendezvous(const FrameHeader& h, const RendezvousRef& ref) {
  if (h.type == FrameType::kRequest) {
    if (incoming_requests_ >= rendezvous_credits_) {
      protocol_error("more than channel_max_rendezvous_requests (" +
                     std::to_string(rendezvous_credits_) + ") rendezvous requests unanswered");
      return;
    }
    ++incoming_requests_;
  } else {
    PendingCall* p = find_pending(h.request_id);
    if (p == nullptr) {
      // The call timed out (or never was): nothing to read it for. Tell the peer it may reuse
      // its buffer.
      ++stats_.late_responses;
      (void)send_control_frame(FrameType::kRendezvousDone, h.request_id, kRendezvousOfResponse);
      return;
    }
    if (p->reading) {
      protocol_error("a second rendezvous response to request " + std::to_string(h.request_id));
      return;
    }
    p->reading = true;
  }
  queued_reads_.push_back({h, ref});
  if (active_reads_ >= max_concurrent_reads_) ++stats_.reads_queued;
  start_queued_reads();
}

void Channel::start_queued_reads() {
  while (!queued_reads_.empty() && active_reads_ < max_concurrent_reads_ && error_.is_ok()) {
    const QueuedRead& q = queued_reads_.front();
    if (q.header.type == FrameType::kResponse && find_pending(q.header.request_id) == nullptr) {
      // Timed out while it waited: not worth reading.
      ++stats_.late_responses;
      std::uint64_t id = q.header.request_id;
      queued_reads_.pop_front();
      (void)send_control_frame(FrameType::kRendezvousDone, id, kRendezvousOfResponse);
      continue;
    }
    auto handle = rendezvous_sinks_->acquire(q.ref.length);
    if (!handle) {
      if (handle.status().code() == Code::kWouldBlock) {
        ++stats_.reads_queued;
        return;  // a read or another channel gives budget back; poll() retries
      }
      fail(handle.status());
      return;
    }
    std::uint32_t index = 0;
    while (index < reads_.size() && reads_[index].active) ++index;
    if (index == reads_.size()) reads_.push_back({});
    reads_[index] = {q.header, handle.value(), q.ref.length, true};
    RendezvousRef ref = q.ref;
    queued_reads_.pop_front();
    ++active_reads_;
    inflight_read_bytes_ += ref.length;
    // Large reads are split so one descriptor never exceeds what every provider accepts.
    constexpr std::uint64_t kChunk = 1ULL << 30;
    std::byte* sink = rendezvous_sinks_->data(handle.value());
    for (std::uint64_t off = 0; off < ref.length; off += kChunk) {
      auto len = static_cast<std::uint32_t>(std::min(kChunk, ref.length - off));
      Descriptor d = Descriptor::single(Opcode::kRdmaRead, 0, sink + off, len,
                                        &rendezvous_sinks_->region(handle.value()));
      d.remote = {ref.addr + off, ref.key};
      // Only the last piece is reported; completions arrive in order on one queue pair.
      if (off + len == ref.length)
        d.context = kTagRead | index;
      else
        d.context = kTagRead | 0xFFFFFFFULL;
      if (Status s = vi_->post_send({&d, 1}, nullptr); !s) {
        fail(s);
        return;
      }
    }
    ++stats_.rendezvous_reads;
  }
}

void Channel::finish_read(std::uint32_t index) {
  if (index >= reads_.size() || !reads_[index].active) return;  // a non-final chunk
  IncomingRead read = reads_[index];
  reads_[index].active = false;
  --active_reads_;
  inflight_read_bytes_ -= read.length;
  std::span<const std::byte> payload(rendezvous_sinks_->data(read.handle), read.length);
  bool is_request = read.header.type == FrameType::kRequest;
  if (is_request) {
    --incoming_requests_;
    deliver_request(read.header, payload);
  } else {
    deliver_response(read.header, payload);
  }
  rendezvous_sinks_->release(read.handle);
  (void)send_control_frame(FrameType::kRendezvousDone, read.header.request_id,
                           is_request ? kRendezvousOfRequest : kRendezvousOfResponse);
  if (!queued_reads_.empty()) start_queued_reads();
}

// Another channel of the domain could not get staging budget: give back what this one only keeps
// for reuse. Runs with the liveness check, so every channel looks within a few hundred polls.
void Channel::trim_idle_staging_if_starved() {
  if (rendezvous_sources_ && rendezvous_sources_->budget().starved()) {
    rendezvous_sources_->trim_idle(0);
  }
  if (rendezvous_sinks_ && rendezvous_sinks_->budget().starved()) rendezvous_sinks_->trim_idle(0);
}

std::size_t Channel::outgoing_staging_bytes() const {
  return rendezvous_sources_ ? rendezvous_sources_->registered_bytes() : 0;
}

std::size_t Channel::incoming_staging_bytes() const {
  return rendezvous_sinks_ ? rendezvous_sinks_->registered_bytes() : 0;
}

std::string Channel::debug_string() const {
  return "credits=" + std::to_string(window_.send_credits()) +
         " to_return=" + std::to_string(window_.to_return()) +
         " backlog=" + std::to_string(backlog_.size()) +
         " outstanding=" + std::to_string(outstanding_) +
         " send_slots_free=" + std::to_string(send_slab_ ? send_slab_->available() : 0) +
         " sent=" + std::to_string(stats_.requests_sent) +
         " answered=" + std::to_string(stats_.responses_received) +
         " received=" + std::to_string(stats_.requests_received) +
         " credit_frames=" + std::to_string(stats_.credit_frames_sent) +
         " reads=" + std::to_string(active_reads_) + "+" + std::to_string(queued_reads_.size()) +
         " queued deferred=" + std::to_string(deferred_.size()) +
         " staging_out=" + std::to_string(outgoing_staging_bytes()) +
         " staging_in=" + std::to_string(incoming_staging_bytes()) + " error=" + error_.to_string();
}

// A peer that sends garbage or breaks a bound is cut off; nothing it says can be trusted any more.
void Channel::protocol_error(const std::string& what) {
  Status reason(Code::kConnLost, "protocol error from peer: " + what,
                ConnLostCause::kProtocolError);
  vi_->abort(reason);
  fail(reason);
}

void Channel::fail(Status reason) {
  if (!error_.is_ok()) return;
  error_ = std::move(reason);
  // Complete every pending call with the error, so callers (and the failover layer) can re-send.
  for (std::uint32_t i = 0; i < pending_.size(); ++i) {
    PendingCall& p = pending_[i];
    if (!p.active) continue;
    p.active = false;
    free_pending_.push_back(i);
    --outstanding_;
    if (p.fn != nullptr) p.fn(p.user, {p.request_id, error_, 0, {}});
  }
}

}  // namespace viaduct::transport
