#include "transport/channel_server.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "transport/tunables.hpp"

namespace viaduct::transport {

namespace {
// In busy mode the listener is looked at every this many idle rounds: a connect then waits a
// few microseconds longer, and the data path pays no syscall per round.
constexpr unsigned kListenerCheckEveryIdleRounds = 1024;
}  // namespace

Result<std::unique_ptr<ChannelServer>> ChannelServer::listen(Domain& domain, const Address& local,
                                                             RequestHandler* handler,
                                                             ChannelServerOptions options) {
  std::unique_ptr<ChannelServer> server(new ChannelServer());  // private constructor
  server->domain_ = &domain;
  server->handler_ = handler;
  server->options_ = std::move(options);
  server->options_.channel.busy_poll = server->options_.busy_poll;
  auto listener = domain.listen(local);
  if (!listener) return listener.status();
  server->listener_ = std::move(listener.value());
  server->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (server->epoll_fd_ < 0) return Status(Code::kResource, "epoll_create1");
  return server;
}

ChannelServer::~ChannelServer() {
  channels_.clear();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void ChannelServer::accept_pending() {
  for (;;) {
    pollfd p{listener_->wait_fd(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return;
    auto request = listener_->get_request(0);
    if (!request) return;
    ChannelHello hello;
    if (Status s = decode_hello(request.value()->private_data(), &hello); !s) {
      (void)request.value()->reject({});
      if (options_.on_channel_closed) options_.on_channel_closed(s);
      continue;
    }
    std::vector<std::byte> reason;
    if (options_.admit && !options_.admit(hello.app, &reason)) {
      (void)request.value()->reject(reason);
      continue;
    }
    ChannelOptions channel_options = options_.channel;
    std::vector<std::byte> reply;
    if (options_.reply_hello) {
      reply = options_.reply_hello();
      channel_options.hello_app = reply;
    }
    auto channel = Channel::accept(*domain_, *request.value(), channel_options,
                                   static_cast<int>(tunables::connect_timeout_ms.get()));
    if (!channel) {
      if (options_.on_channel_closed) options_.on_channel_closed(channel.status());
      continue;
    }
    channel.value()->set_handler(handler_);
    channels_.push_back(std::move(channel.value()));
    ++accepted_;
  }
}

void ChannelServer::drop_failed() {
  std::erase_if(channels_, [&](const std::unique_ptr<Channel>& c) {
    if (c->healthy()) return false;
    if (options_.on_channel_closed) options_.on_channel_closed(c->error());
    if (options_.before_destroy) options_.before_destroy(*c);
    return true;
  });
}

void ChannelServer::close_if(const std::function<bool(const Channel&)>& which) {
  // Only closes: the channels are destroyed at the end of the round. close_if is called from
  // request handlers and response callbacks (a step-down), i.e. while run_once iterates over
  // channels_ and a channel's poll() is on the stack; destroying them here was a use-after-free.
  for (auto& c : channels_) {
    if (c->healthy() && which(*c)) c->close();
  }
  if (!polling_) drop_failed();
}

void ChannelServer::set_busy_poll(bool busy) {
  options_.busy_poll = busy;
  options_.channel.busy_poll = busy;
}

void ChannelServer::block(int timeout_ms) {
  // Rebuild the interest set each time: channels come and go, and this path is only taken idle.
  epoll_event none{};
  if (!listener_->arm()) return;  // a connection request is waiting
  std::vector<int> fds;
  fds.push_back(listener_->wait_fd());
  fds.insert(fds.end(), wake_fds_.begin(), wake_fds_.end());
  for (auto& c : channels_) {
    if (c->busy_poll()) continue;  // no wait object: polled every round, within timeout_ms
    if (!c->arm()) return;         // something is already waiting
    fds.push_back(c->wait_fd());
  }
  for (int fd : fds) {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e);
  }
  epoll_event events[16];
  epoll_wait(epoll_fd_, events, 16, timeout_ms);
  for (int fd : fds) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &none);
}

std::size_t ChannelServer::run_once(int timeout_ms) {
  std::size_t handled = 0;
  polling_ = true;
  // By index: a handler may accept nothing, but it may close channels (see close_if).
  for (std::size_t i = 0; i < channels_.size(); ++i) handled += channels_[i]->poll();
  polling_ = false;
  bool failed = false;
  for (auto& c : channels_) failed = failed || !c->healthy();
  if (failed) drop_failed();
  if (handled == 0) {
    if (!options_.busy_poll || channels_.empty() ||
        (++idle_rounds_ % kListenerCheckEveryIdleRounds) == 0) {
      accept_pending();
    }
    if (!options_.busy_poll) {
      block(timeout_ms);
      for (auto& c : channels_) c->check_liveness();
    }
  }
  return handled;
}

void ChannelServer::run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
    // Blocking servers wake at least once per keep-alive interval so heartbeats go out on time.
    auto interval = tunables::channel_keepalive_interval_ms.get();
    (void)run_once(
        options_.busy_poll
            ? 0
            : static_cast<int>(interval > 0 ? std::min<std::int64_t>(interval, 50) : 50));
  }
}

}  // namespace viaduct::transport
