// A server's event loop over one listener and the channels it accepted: accepts, polls, and drops
// channels that failed (a malformed peer is cut off while the others keep being served).
//
// What peers can make the loop spend is bounded, and the cost of a round does not grow with the
// number of idle connections:
// - Accepting never waits. A connection request becomes a pending accept whose handshake is
//   progressed across rounds; one still incomplete after server_half_open_timeout_ms is dropped.
//   At most server_max_pending_accepts are set up at once and server_max_connections held in all;
//   requests beyond are rejected with a reason that says which bound was met (kServerFull).
// - Channels that carried requests or answers recently are hot and polled every round. The others
//   are cold: their readiness fds (the connection's socket, for libfabric's tcp provider) sit in
//   one epoll set that is looked at every few rounds, so a client that wakes up is noticed within
//   microseconds and a thousand idle ones cost one syscall. Heartbeats do not make a channel hot.
//   Back ends without a readiness fd have their cold channels polled a few per round in turn.
//   Every server_idle_sweep_ms keep-alives are sent and checked; every few sweeps each cold
//   channel is also polled, as a safety net.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "transport/channel.hpp"

namespace viaduct::transport {

struct ChannelServerOptions {
  ChannelOptions channel;
  // Busy-poll (lowest latency, one core spinning) or block in epoll when idle.
  bool busy_poll = true;
  // Decide on a connection from the peer's hello application bytes; fill `reject_reason` and
  // return false to refuse it. Default: accept everyone.
  std::function<bool(std::span<const std::byte> hello_app, std::vector<std::byte>* reject_reason)>
      admit;
  // If set, the hello application bytes of each accept reply (e.g. the server's current role and
  // epoch); otherwise channel.hello_app.
  std::function<std::vector<std::byte>()> reply_hello;
  // Called when a channel is dropped, with why.
  std::function<void(const Status&)> on_channel_closed;
  // Called just before a channel is destroyed, so that whoever kept a pointer to it (an answer
  // waiting to be sent) can forget it.
  std::function<void(const Channel&)> before_destroy;
  // 0: the tunables server_max_connections, server_max_pending_accepts,
  // server_half_open_timeout_ms.
  std::uint32_t max_connections = 0;
  std::uint32_t max_pending_accepts = 0;
  std::uint32_t half_open_timeout_ms = 0;
};

// Why a connection request was refused by the server itself (not by `admit`): the reject's
// private data starts with this prefix, followed by the bound that was met.
inline constexpr std::string_view kServerFullReason = "viaduct: server full: ";

// Counters of what the server refused or dropped (read from the serving thread).
struct ChannelServerStats {
  std::uint64_t accepted = 0;           // connections established
  std::uint64_t refused_full = 0;       // rejected: server_max_connections reached
  std::uint64_t refused_busy = 0;       // rejected: server_max_pending_accepts being set up
  std::uint64_t half_open_dropped = 0;  // handshake not complete within the deadline
  std::uint64_t handshake_failed = 0;   // handshake failed (peer went away, malformed hello)
  std::uint64_t idle_sweeps = 0;        // full sweeps of the cold channels
  std::uint64_t ready_checks = 0;       // looks at the readiness set
  std::uint64_t ready_polls = 0;        // cold channels polled because their socket was ready
};

class ChannelServer {
 public:
  static Result<std::unique_ptr<ChannelServer>> listen(Domain& domain, const Address& local,
                                                       RequestHandler* handler,
                                                       ChannelServerOptions options);
  ~ChannelServer();
  [[nodiscard]] const Address& address() const { return listener_->address(); }
  // One round: accept what is waiting, progress every channel, drop failed ones. In blocking
  // mode, sleeps up to timeout_ms when nothing happened. Returns the completions handled.
  std::size_t run_once(int timeout_ms);
  void run(const std::atomic<bool>& stop);
  [[nodiscard]] std::size_t connections() const { return channels_.size(); }
  // Connection requests accepted whose handshake is not complete yet.
  [[nodiscard]] std::size_t pending_accepts() const { return pending_.size(); }
  // Channels polled every round (traffic seen recently).
  [[nodiscard]] std::size_t hot_channels() const { return hot_.size(); }
  [[nodiscard]] std::uint64_t accepted() const { return stats_.accepted; }
  [[nodiscard]] const ChannelServerStats& stats() const { return stats_; }
  // Switches between busy-polling and blocking in epoll when idle (e.g. a standby server that
  // should leave the CPU to others until it takes over). Channels accepted while busy-polling
  // have no wait object; a blocking round still polls them, and its timeout bounds their latency.
  void set_busy_poll(bool busy);
  // An extra fd that ends a blocking round when readable (e.g. an eventfd another thread writes
  // to when something needs the loop's attention). The caller keeps it open and drains it.
  void add_wake_fd(int fd) { wake_fds_.push_back(fd); }
  // Closes every channel whose peer hello matches `which` (e.g. all clients, when stepping down).
  // Safe from inside a request handler or response callback: closed channels are destroyed only
  // between rounds, never under a poll() that is still running.
  void close_if(const std::function<bool(const Channel&)>& which);

 private:
  struct Served {
    std::unique_ptr<Channel> channel;
    std::uint64_t id = 0;            // names it in the epoll set (indices move on erase)
    std::uint32_t empty_polls = 0;   // consecutive polls that found no work
    std::uint64_t traffic_seen = 0;  // Channel::traffic() at the last poll
    bool hot = false;
    bool in_epoll = false;
    bool watched = false;  // its readiness fd is in ready_epoll_fd_
    std::uint32_t watch_attempts = 0;
  };
  struct PendingAccept {
    std::unique_ptr<Channel> channel;
    std::int64_t deadline_ns = 0;
  };

  ChannelServer() = default;
  void accept_pending(std::int64_t now_ns);
  void refuse(ConnectionRequest& request, std::string_view bound, std::uint64_t* counter);
  void progress_pending(std::int64_t now_ns);
  void add_channel(std::unique_ptr<Channel> channel);
  std::size_t poll_channel(std::size_t index);
  std::size_t poll_hot();
  std::size_t sweep_some();
  std::size_t poll_ready();
  void watch(Served& s);
  void sweep_all(std::int64_t now_ns);
  void drop_failed();
  void rebuild_indexes();
  void block(int timeout_ms);

  Domain* domain_ = nullptr;
  RequestHandler* handler_ = nullptr;
  ChannelServerOptions options_;
  std::unique_ptr<Listener> listener_;
  std::vector<Served> channels_;
  std::vector<std::size_t> hot_;  // indices into channels_
  std::unordered_map<std::uint64_t, std::size_t> index_of_id_;
  std::vector<PendingAccept> pending_;
  std::vector<int> wake_fds_;
  int epoll_fd_ = -1;
  // Every channel's readiness fd, where the back end has one: cold channels are found here.
  int ready_epoll_fd_ = -1;
  std::size_t unwatched_ = 0;  // channels without a readiness fd (polled in turn instead)
  bool listener_in_epoll_ = false;
  std::vector<int> wake_fds_in_epoll_;
  std::uint64_t next_id_ = 1;
  std::size_t sweep_cursor_ = 0;
  std::uint64_t rounds_ = 0;
  std::int64_t next_sweep_ns_ = 0;
  unsigned sweeps_since_full_poll_ = 0;
  std::int64_t half_open_timeout_ns_ = 0;
  std::size_t max_connections_ = 0;
  std::size_t max_pending_ = 0;
  bool polling_ = false;      // run_once is iterating over channels_: defer destruction
  bool failed_seen_ = false;  // a channel failed or was closed: drop_failed at the round's end
  ChannelServerStats stats_;
};

}  // namespace viaduct::transport
