// A server's event loop over one listener and the channels it accepted: accepts, polls, and drops
// channels that failed (a malformed peer is cut off while the others keep being served).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
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
  [[nodiscard]] std::uint64_t accepted() const { return accepted_; }
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
  ChannelServer() = default;
  void accept_pending();
  void drop_failed();
  void block(int timeout_ms);

  Domain* domain_ = nullptr;
  RequestHandler* handler_ = nullptr;
  ChannelServerOptions options_;
  std::unique_ptr<Listener> listener_;
  std::vector<std::unique_ptr<Channel>> channels_;
  std::vector<int> wake_fds_;
  int epoll_fd_ = -1;
  unsigned idle_rounds_ = 0;
  bool polling_ = false;  // run_once is iterating over channels_: defer destruction
  std::uint64_t accepted_ = 0;
};

}  // namespace viaduct::transport
