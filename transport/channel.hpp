// The request/response channel: many outstanding requests over one virtual interface, with
// credit-based flow control, eager frames up to a threshold and RDMA-read rendezvous above it.
//
// Threading model: a Channel belongs to one thread at a time (like eRPC's Rpc object). Every call
// — call_async, respond, poll, wait — must come from that thread; callbacks and the request
// handler run on it, from inside poll(). Progress happens only inside poll() (busy) or the
// sync call() / wait() (busy or blocking on the CQ's fd, per ChannelOptions::busy_poll). Use one
// channel per thread for parallelism; nothing is shared between channels but the Domain.
//
// Hot path allocation: none. Receive and send slots are registered up front and pending requests
// live in a fixed table. Only under overload (a peer that withholds credits while requests keep
// arriving) may the backlog allocate, so that a response is never lost. Rendezvous buffers are
// taken from a registered pool that only grows the first time a size class is used.
//
// Hostile peers: everything a peer sends is checked before it is believed, and what a peer can make
// us allocate is bounded (transport/tunables.hpp). A rendezvous it announces may be at most
// channel_max_message_bytes; at most channel_max_concurrent_reads of its payloads are read at once
// (the rest wait, holding no memory); it may have at most channel_max_rendezvous_requests
// rendezvous requests unanswered (we tell it in the hello); the registered staging of a channel
// and of a whole Domain is budgeted (channel_max_staging_bytes, domain_max_staging_bytes) and idle
// staging beyond channel_max_idle_staging_bytes is deregistered. A peer that breaks a bound it was
// told, returns credits it never held or sends a malformed frame is cut off with kConnLost
// (protocol_error) naming what it broke; the other channels carry on. Budgets only make work wait:
// an honest peer under load reaches them too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "transport/buffer_pool.hpp"
#include "transport/channel_credit.hpp"
#include "transport/domain.hpp"
#include "transport/frame.hpp"
#include "transport/tunable.hpp"

namespace viaduct::transport {

namespace tunables {
extern Tunable channel_recv_slots;
extern Tunable channel_eager_threshold_bytes;
extern Tunable channel_max_outstanding;
extern Tunable channel_max_message_bytes;
extern Tunable channel_keepalive_interval_ms;
extern Tunable channel_keepalive_idle_interval_ms;
extern Tunable channel_keepalive_missed_limit;
extern Tunable channel_keepalive_min_bandwidth_mbps;
}  // namespace tunables

struct ChannelOptions {
  std::uint32_t recv_slots = 0;       // 0: tunable channel_recv_slots
  std::uint32_t eager_threshold = 0;  // 0: tunable channel_eager_threshold_bytes
  std::uint32_t max_outstanding = 0;  // 0: tunable channel_max_outstanding
  bool busy_poll = true;              // sync call(): spin on the CQ, or block on its fd
  // Application bytes carried in the connection hello (name, epoch, ...): at most
  // kMaxPrivateData - kHelloBytes = 40.
  std::span<const std::byte> hello_app;
};
inline constexpr std::size_t kMaxHelloAppBytes = kMaxPrivateData - kHelloBytes;

struct Response {
  std::uint64_t request_id = 0;
  Status status;                       // transport outcome: ok, or kConnLost / kTimeout
  std::uint32_t app_status = 0;        // the handler's own status code
  std::span<const std::byte> payload;  // valid only during the callback
};
using ResponseFn = void (*)(void* user, const Response& response);

// The waiting side of a synchronous call: pass &sync with SyncCall::on_response as the callback,
// progress until `done`, then take result(). Copies the answer into `out`.
struct SyncCall {
  bool done = false;
  Status status;
  std::size_t length = 0;
  std::uint32_t app_status = 0;
  std::span<std::byte> out;

  static void on_response(void* user, const Response& response);
  Result<std::size_t> result(std::uint32_t* app_status_out) const;
};

struct IncomingRequest {
  std::uint64_t request_id = 0;
  std::span<const std::byte> payload;  // valid only during on_request: copy to keep
};

class Channel;
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Answer with channel.respond(request.request_id, ...), now or later from the same thread.
  virtual void on_request(Channel& channel, const IncomingRequest& request) = 0;
};

struct ChannelStats {
  std::uint64_t requests_sent = 0;
  std::uint64_t responses_received = 0;
  std::uint64_t requests_received = 0;
  std::uint64_t credit_frames_sent = 0;
  std::uint64_t rendezvous_reads = 0;
  std::uint64_t late_responses = 0;  // answers to requests that had timed out
  std::uint64_t reads_queued = 0;    // rendezvous payloads that waited for a read slot or budget
  std::uint64_t responses_deferred = 0;  // large responses that waited for staging budget
  std::uint64_t backlogged = 0;          // frames that waited for a credit or a send slot
  std::uint64_t heartbeats_sent = 0;
};

class Channel {
 public:
  static Result<std::unique_ptr<Channel>> connect(Domain& domain, const Address& remote,
                                                  const ChannelOptions& options, int timeout_ms,
                                                  std::vector<std::byte>* reject_data = nullptr);
  static Result<std::unique_ptr<Channel>> accept(Domain& domain, ConnectionRequest& request,
                                                 const ChannelOptions& options, int timeout_ms);
  // Non-blocking accept for a server's loop: the channel comes back while its connection is still
  // being set up; call progress_accept() until it is OK (connected) or fails. Nothing else may be
  // called on it before.
  static Result<std::unique_ptr<Channel>> start_accept(Domain& domain, ConnectionRequest& request,
                                                       const ChannelOptions& options);
  // OK once connected, kWouldBlock while the handshake is under way, the failure otherwise.
  Status progress_accept();
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Send a request; `fn(user, response)` runs from poll() when it is answered or fails. The
  // request bytes are copied before return. kWouldBlock: max_outstanding reached, poll and retry.
  Status call_async(std::span<const std::byte> request, ResponseFn fn, void* user,
                    std::uint64_t* request_id = nullptr);
  // Send and wait up to timeout_ms; returns the response length copied into `response`.
  Result<std::size_t> call(std::span<const std::byte> request, std::span<std::byte> response,
                           int timeout_ms, std::uint32_t* app_status = nullptr);
  Status respond(std::uint64_t request_id, std::span<const std::byte> payload,
                 std::uint32_t app_status = 0);
  void set_handler(RequestHandler* handler) { handler_ = handler; }

  // One round of progress; returns the completions handled (0: nothing happened).
  std::size_t poll();
  // Block until progress may be possible or timeout_ms passes (kTimeout). Wakes at least once per
  // keep-alive interval so heartbeats go out and a silent peer is noticed.
  Status wait(int timeout_ms);
  // Sends a heartbeat if this side has been quiet for a keep-alive interval, and declares the peer
  // lost if it has been silent too long. poll() and wait() call it; an event loop that blocks on
  // wait_fd() itself calls it after each wake-up (at least once per interval).
  void check_liveness();
  [[nodiscard]] int wait_fd() const { return vi_->cq().wait_fd(); }
  bool arm() { return vi_->cq().arm(); }
  // Readable while the peer has sent something this side has not read; -1 when the back end
  // cannot say (see CompletionQueue::readiness_fd). For a server watching many idle channels.
  [[nodiscard]] int readiness_fd() const { return vi_->cq().readiness_fd(); }
  // Requests and responses this channel has delivered so far: it grows with application traffic
  // only, not with heartbeats and credit returns (a server keeps the channels that carry work hot).
  [[nodiscard]] std::uint64_t traffic() const {
    return stats_.requests_received + stats_.responses_received + stats_.rendezvous_reads;
  }
  // Work under way that needs this side's polling to finish: calls awaiting their answers,
  // rendezvous reads, frames waiting for credits or send slots, deferred responses.
  [[nodiscard]] bool work_in_flight() const {
    return outstanding_ > 0 || active_reads_ > 0 || !queued_reads_.empty() || !backlog_.empty() ||
           !deferred_.empty();
  }

  [[nodiscard]] bool healthy() const { return error_.is_ok(); }
  [[nodiscard]] bool busy_poll() const { return busy_poll_; }
  [[nodiscard]] const Status& error() const { return error_; }
  [[nodiscard]] std::size_t outstanding() const { return outstanding_; }
  [[nodiscard]] std::span<const std::byte> peer_hello_app() const { return peer_app_; }
  [[nodiscard]] const ChannelStats& stats() const { return stats_; }
  [[nodiscard]] std::uint32_t eager_threshold() const { return eager_threshold_; }
  // Payloads up to this size go inline to this peer; larger ones by rendezvous (the lower of the
  // two sides' thresholds). A rendezvous request reaches the peer's handler only once its read
  // completes: inline requests sent after it may be handled before it.
  [[nodiscard]] std::uint32_t send_inline_limit() const {
    return std::min(eager_threshold_, peer_eager_threshold_);
  }
  // Registered rendezvous staging held now: buffers for our payloads the peer reads (outgoing),
  // and for the peer's payloads we read (incoming), in use or kept idle for reuse.
  [[nodiscard]] std::size_t outgoing_staging_bytes() const;
  [[nodiscard]] std::size_t incoming_staging_bytes() const;
  VirtualInterface& vi() { return *vi_; }
  // Credits, backlog and counters in one line, for logs and failing tests.
  [[nodiscard]] std::string debug_string() const;
  // Orderly close; pending requests fail with kConnLost (local_close).
  void close();

 private:
  struct PendingCall {
    ResponseFn fn = nullptr;
    void* user = nullptr;
    std::uint64_t request_id = 0;
    std::uint32_t generation = 0;
    bool active = false;
    bool reading = false;  // its rendezvous response is queued or being read
  };
  // A frame waiting for a credit or a send slot. Slot-backed frames already hold their bytes;
  // control frames are encoded when they go out.
  struct BacklogEntry {
    FrameType type = FrameType::kCredit;
    std::uint32_t send_slot = 0;
    std::uint32_t length = 0;  // slot-backed when > 0
    std::uint64_t request_id = 0;
    std::uint32_t app_status = 0;
    // A response that found every send slot busy keeps its encoded frame here until a slot frees
    // up. Only the overload path allocates; a response is never dropped.
    std::vector<std::byte> bytes;
  };
  struct OutgoingRendezvous {
    std::uint64_t request_id = 0;
    std::uint32_t handle = 0;
    bool is_response = false;
    bool active = false;
  };
  struct IncomingRead {
    FrameHeader header;
    std::uint32_t handle = 0;
    std::uint64_t length = 0;
    bool active = false;
  };
  // An announced rendezvous waiting for a read slot or staging budget: holds no buffer.
  struct QueuedRead {
    FrameHeader header;
    RendezvousRef ref;
  };
  // A large response that found the outgoing staging budget spent: its bytes wait here (the
  // overload path allocates; a response is never lost) until a rendezvous_done frees some.
  struct DeferredResponse {
    std::uint64_t request_id = 0;
    std::uint32_t app_status = 0;
    std::vector<std::byte> payload;
  };

  Channel() = default;
  Status init(Domain& domain, const ChannelOptions& options);
  Status post_all_receives(VirtualInterface& vi);
  std::size_t encode_own_hello(std::span<std::byte> out) const;
  ViOptions vi_options();
  Status finish_connect(std::unique_ptr<VirtualInterface> vi);

  Status send_data_frame(FrameType type, std::uint64_t request_id, std::uint32_t app_status,
                         std::span<const std::byte> payload);
  Status send_data_frame(FrameType type, std::uint64_t request_id, std::uint32_t app_status,
                         std::span<const std::byte> payload, bool* still_deferred);
  void flush_deferred();
  void adopt_peer_hello(const ChannelHello& peer, std::unique_ptr<VirtualInterface> vi);
  // Both accepts: the connector's hello decoded (a malformed one rejected), our channel set up,
  // and the VI made by `accept_vi(our_hello, vi_options)` (blocking or not).
  template <class AcceptVi>
  static Result<std::unique_ptr<Channel>> accept_with(Domain& domain, ConnectionRequest& request,
                                                      const ChannelOptions& options,
                                                      AcceptVi&& accept_vi);
  Status send_control_frame(FrameType type, std::uint64_t request_id, std::uint32_t app_status);
  Status post_frame(std::byte* frame, std::uint32_t length, std::int64_t send_slot);
  Status push_backlog(BacklogEntry entry);
  void flush_backlog();
  void maybe_return_credits();

  void handle_completion(const Completion& c);
  void handle_frame(std::uint32_t slot, std::uint32_t bytes);
  void deliver_request(const FrameHeader& h, std::span<const std::byte> payload);
  void deliver_response(const FrameHeader& h, std::span<const std::byte> payload);
  void on_rendezvous(const FrameHeader& h, const RendezvousRef& ref);
  void start_queued_reads();
  void finish_read(std::uint32_t index);
  void trim_idle_staging_if_starved();
  void fail(Status reason);
  void protocol_error(const std::string& what);
  PendingCall* find_pending(std::uint64_t request_id);

  Domain* domain_ = nullptr;
  std::unique_ptr<BufferSlab> recv_slab_;
  std::unique_ptr<BufferSlab> send_slab_;
  std::unique_ptr<RendezvousPool> rendezvous_sources_;
  std::unique_ptr<RendezvousPool> rendezvous_sinks_;
  std::unique_ptr<VirtualInterface> vi_;  // after the memory it uses: destroyed first

  CreditWindow window_;
  RequestHandler* handler_ = nullptr;
  std::uint32_t recv_slots_ = 0;
  std::uint32_t eager_threshold_ = 0;
  std::uint32_t peer_eager_threshold_ = 0;
  std::uint64_t max_message_bytes_ = 0;
  FrameLimits limits_;  // what a peer frame may announce: set once the peer's hello is known
  std::uint32_t max_concurrent_reads_ = 0;
  std::uint32_t rendezvous_credits_ = 0;       // the peer's rendezvous requests we accept at once
  std::uint32_t peer_rendezvous_credits_ = 0;  // ours the peer accepts at once
  std::uint32_t outgoing_requests_ = 0;        // our rendezvous requests not yet read by the peer
  std::uint32_t incoming_requests_ = 0;        // the peer's, announced and not yet read by us
  std::uint32_t active_reads_ = 0;
  std::size_t inline_limit_ = 0;
  bool busy_poll_ = true;

  std::vector<PendingCall> pending_;
  std::vector<std::uint32_t> free_pending_;
  std::size_t outstanding_ = 0;
  std::deque<BacklogEntry> backlog_;
  std::vector<OutgoingRendezvous> outgoing_;
  std::vector<IncomingRead> reads_;
  std::deque<QueuedRead> queued_reads_;
  std::deque<DeferredResponse> deferred_;
  // Liveness without a clock read on the hot path: frames are counted, and every
  // kLivenessCheckEveryPolls polls (and on every wait) the counts are compared with the last look.
  std::uint64_t frames_received_ = 0;
  std::uint64_t frames_sent_ = 0;
  std::uint64_t seen_received_ = 0;
  std::uint64_t seen_sent_ = 0;
  std::int64_t last_heard_ns_ = 0;
  std::int64_t last_spoke_ns_ = 0;
  std::int64_t keepalive_interval_ns_ = 0;  // 0: keep-alive off
  std::int64_t keepalive_idle_interval_ns_ = 0;
  std::uint64_t owed_answers_ = 0;  // requests handed to the handler and not answered yet
  bool was_waiting_ = false;        // calls unanswered at the last liveness check
  std::int64_t keepalive_missed_limit_ = 0;
  std::int64_t keepalive_floor_bytes_per_ms_ = 0;
  std::uint64_t inflight_read_bytes_ = 0;  // rendezvous reads from the peer not yet complete
  unsigned polls_since_check_ = 0;
  std::vector<std::byte> peer_app_;
  std::vector<std::byte> hello_app_;
  Status error_;
  ChannelStats stats_;
};

}  // namespace viaduct::transport
