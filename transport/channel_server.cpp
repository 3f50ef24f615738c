#include "transport/channel_server.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "transport/clock.hpp"
#include "transport/tunables.hpp"

namespace viaduct::transport {

namespace {
// In busy mode the listener is looked at every this many rounds (every round while no channel is
// connected): a connect then waits a few microseconds longer, and the data path pays no syscall
// per round. Counted in all rounds, not idle ones, so a loaded server still accepts.
constexpr std::uint64_t kListenerCheckEveryRounds = 256;
// Handshakes under way are progressed every this many busy rounds (every blocking round).
constexpr std::uint64_t kPendingCheckEveryRounds = 16;
// The clock is read every this many busy rounds (every blocking round): ~20 ns saved per round.
constexpr std::uint64_t kClockEveryRounds = 64;
// Connection requests taken off the listener per round: a flood of them cannot hold the loop.
constexpr int kMaxRequestsPerRound = 64;
// A hot channel that found nothing in this many consecutive polls turns cold.
constexpr std::uint32_t kColdAfterEmptyPolls = 4096;
// A new channel is hot for this many empty polls only: a client usually sends at once, but a crowd
// connecting must not make every round poll all of it.
constexpr std::uint32_t kNewChannelEmptyPolls = 64;
// Cold channels whose back end gives no readiness fd are polled this many per round, in turn: a
// client that wakes up is seen within connections / kColdPollsPerRound rounds; each costs one CQ
// read.
constexpr std::size_t kColdPollsPerRound = 1;
// Cold channels with a readiness fd are watched in one epoll set, looked at every this many busy
// rounds (every blocking round): one syscall finds the few that have something, however many are
// idle. A client that wakes up is seen within tens of microseconds.
constexpr std::uint64_t kReadyCheckEveryRounds = 128;
// Of the periodic sweeps (server_idle_sweep_ms), every this many also polls every cold channel
// without a readiness fd; the others only send and check keep-alives. A peer's frames are counted
// before its silence could reach the keep-alive budget (5 intervals of 100 ms by default).
constexpr unsigned kFullPollEverySweeps = 4;
// Channels with a readiness fd are polled in full only every this many sweeps: a safety net for
// bytes the provider buffered off the socket before we read its CQ (the socket then looks idle).
constexpr unsigned kWatchedFullPollEverySweeps = 16;
// Polls of a new channel that look for its readiness fd before it is left to the turn-by-turn
// sweep (a back end that has none).
constexpr std::uint32_t kWatchAttempts = 16;
// The loop blocks at most this long while handshakes are under way (their events are not in the
// epoll set: the endpoints are polled).
constexpr int kPendingBlockCapMs = 1;

std::size_t resolve(std::uint32_t option, const Tunable& tunable) {
  return option != 0 ? option : static_cast<std::size_t>(tunable.get());
}
}  // namespace

Result<std::unique_ptr<ChannelServer>> ChannelServer::listen(Domain& domain, const Address& local,
                                                             RequestHandler* handler,
                                                             ChannelServerOptions options) {
  std::unique_ptr<ChannelServer> server(new ChannelServer());  // private constructor
  server->domain_ = &domain;
  server->handler_ = handler;
  server->options_ = std::move(options);
  server->options_.channel.busy_poll = server->options_.busy_poll;
  server->max_connections_ =
      resolve(server->options_.max_connections, tunables::server_max_connections);
  server->max_pending_ =
      resolve(server->options_.max_pending_accepts, tunables::server_max_pending_accepts);
  server->half_open_timeout_ns_ =
      static_cast<std::int64_t>(
          resolve(server->options_.half_open_timeout_ms, tunables::server_half_open_timeout_ms)) *
      1'000'000;
  auto listener = domain.listen(local);
  if (!listener) return listener.status().with_context("listen on " + local.to_string());
  server->listener_ = std::move(listener.value());
  server->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (server->epoll_fd_ < 0) return Status(Code::kResource, "epoll_create1");
  server->ready_epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (server->ready_epoll_fd_ < 0) return Status(Code::kResource, "epoll_create1");
  server->pending_.reserve(server->max_pending_);
  return server;
}

ChannelServer::~ChannelServer() {
  pending_.clear();
  channels_.clear();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (ready_epoll_fd_ >= 0) ::close(ready_epoll_fd_);
}

void ChannelServer::refuse(ConnectionRequest& request, std::string_view bound,
                           std::uint64_t* counter) {
  std::string reason(kServerFullReason);
  reason += bound;
  (void)request.reject(std::as_bytes(std::span(reason.data(), reason.size())));
  ++*counter;
}

void ChannelServer::accept_pending(std::int64_t now_ns) {
  for (int taken = 0; taken < kMaxRequestsPerRound; ++taken) {
    pollfd p{listener_->wait_fd(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return;
    auto request = listener_->get_request(0);
    if (!request) return;
    ConnectionRequest& r = *request.value();
    ChannelHello hello;
    if (Status s = decode_hello(r.private_data(), &hello); !s) {
      (void)r.reject({});
      ++stats_.handshake_failed;
      if (options_.on_channel_closed) options_.on_channel_closed(s);
      continue;
    }
    // The bounds come before anything is allocated for the request.
    if (channels_.size() + pending_.size() >= max_connections_) {
      refuse(r, "server_max_connections", &stats_.refused_full);
      continue;
    }
    if (pending_.size() >= max_pending_) {
      refuse(r, "server_max_pending_accepts", &stats_.refused_busy);
      continue;
    }
    std::vector<std::byte> reason;
    if (options_.admit && !options_.admit(hello.app, &reason)) {
      (void)r.reject(reason);
      continue;
    }
    ChannelOptions channel_options = options_.channel;
    std::vector<std::byte> reply;
    if (options_.reply_hello) {
      reply = options_.reply_hello();
      channel_options.hello_app = reply;
    }
    auto channel = Channel::start_accept(*domain_, r, channel_options);
    if (!channel) {
      ++stats_.handshake_failed;
      if (options_.on_channel_closed) options_.on_channel_closed(channel.status());
      continue;
    }
    pending_.push_back({std::move(channel.value()), now_ns + half_open_timeout_ns_});
  }
}

void ChannelServer::progress_pending(std::int64_t now_ns) {
  std::erase_if(pending_, [&](PendingAccept& p) {
    if (!p.channel->healthy()) return true;  // closed by close_if while being set up
    Status s = p.channel->progress_accept();
    if (s) {
      add_channel(std::move(p.channel));
      return true;
    }
    if (s.code() == Code::kWouldBlock) {
      if (now_ns < p.deadline_ns) return false;
      ++stats_.half_open_dropped;
      if (options_.on_channel_closed) {
        options_.on_channel_closed(
            Status(Code::kTimeout, "connection handshake not complete within " +
                                       std::to_string(half_open_timeout_ns_ / 1'000'000) +
                                       " ms (server_half_open_timeout_ms): dropped"));
      }
      return true;  // destroying the channel closes its endpoint
    }
    ++stats_.handshake_failed;
    if (options_.on_channel_closed) options_.on_channel_closed(s);
    return true;
  });
}

void ChannelServer::add_channel(std::unique_ptr<Channel> channel) {
  channel->set_handler(handler_);
  Served served;
  served.channel = std::move(channel);
  served.id = next_id_++;
  served.hot = true;  // a new client usually sends at once
  served.empty_polls = kColdAfterEmptyPolls - kNewChannelEmptyPolls;
  served.traffic_seen = served.channel->traffic();
  ++unwatched_;
  watch(served);
  index_of_id_[served.id] = channels_.size();
  hot_.push_back(channels_.size());
  channels_.push_back(std::move(served));
  ++stats_.accepted;
}

void ChannelServer::watch(Served& s) {
  // The readiness fd is registered once; the channel's destruction closes it, which takes it out
  // of the set. A back end may know it only after a few polls (libfabric's tcp provider).
  ++s.watch_attempts;
  int fd = s.channel->readiness_fd();
  if (fd < 0) return;
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = s.id;
  s.watched = epoll_ctl(ready_epoll_fd_, EPOLL_CTL_ADD, fd, &e) == 0;
  if (s.watched) --unwatched_;
}

std::size_t ChannelServer::poll_channel(std::size_t index) {
  Served& s = channels_[index];
  if (!s.channel->healthy()) return 0;
  std::size_t n = s.channel->poll();
  if (!s.watched && s.watch_attempts < kWatchAttempts) watch(s);
  if (!s.channel->healthy()) failed_seen_ = true;
  // Hot means carrying work: requests or answers, or work under way. Heartbeats and credit
  // returns alone (ten a second from each idle client) keep a channel cold.
  std::uint64_t traffic = s.channel->traffic();
  bool working = traffic != s.traffic_seen || (n > 0 && s.channel->work_in_flight());
  s.traffic_seen = traffic;
  if (working) {
    s.empty_polls = 0;
    if (!s.hot) {
      s.hot = true;
      hot_.push_back(index);
    }
  } else {
    ++s.empty_polls;
  }
  return n;
}

std::size_t ChannelServer::poll_hot() {
  std::size_t handled = 0;
  // By index, and hot_ may grow meanwhile (poll_channel promotes): a handler may close channels
  // (see close_if) but nothing here adds or destroys one.
  for (std::size_t k = 0; k < hot_.size();) {
    std::size_t index = hot_[k];
    handled += poll_channel(index);
    Served& s = channels_[index];
    bool keep_hot = s.empty_polls < kColdAfterEmptyPolls ||
                    // Without a wait object it must be polled every blocking round anyway.
                    (!options_.busy_poll && s.channel->busy_poll());
    if (keep_hot) {
      ++k;
    } else {
      s.hot = false;
      hot_[k] = hot_.back();
      hot_.pop_back();
    }
  }
  return handled;
}

std::size_t ChannelServer::poll_ready() {
  std::size_t handled = 0;
  epoll_event events[64];
  int n = epoll_wait(ready_epoll_fd_, events, 64, 0);
  ++stats_.ready_checks;
  for (int k = 0; k < n; ++k) {
    auto it = index_of_id_.find(events[k].data.u64);
    if (it == index_of_id_.end()) continue;
    if (channels_[it->second].hot) continue;  // polled every round anyway
    ++stats_.ready_polls;
    handled += poll_channel(it->second);
  }
  return handled;
}

std::size_t ChannelServer::sweep_some() {
  if (unwatched_ == 0) return 0;  // the readiness set covers every channel
  std::size_t handled = 0;
  std::size_t cold = channels_.size() - hot_.size();
  for (std::size_t looked = 0, polled = 0;
       polled < std::min(kColdPollsPerRound, cold) && looked < channels_.size(); ++looked) {
    if (sweep_cursor_ >= channels_.size()) sweep_cursor_ = 0;
    std::size_t index = sweep_cursor_++;
    if (channels_[index].hot || channels_[index].watched) continue;
    handled += poll_channel(index);
    ++polled;
  }
  return handled;
}

void ChannelServer::sweep_all(std::int64_t now_ns) {
  ++stats_.idle_sweeps;
  ++sweeps_since_full_poll_;
  bool full_poll = sweeps_since_full_poll_ % kFullPollEverySweeps == 0;
  bool full_poll_watched = sweeps_since_full_poll_ % kWatchedFullPollEverySweeps == 0;
  if (full_poll_watched) sweeps_since_full_poll_ = 0;
  for (std::size_t i = 0; i < channels_.size(); ++i) {
    Served& s = channels_[i];
    if (!s.channel->healthy()) continue;
    if (!s.hot && (s.watched ? full_poll_watched : full_poll)) (void)poll_channel(i);
    s.channel->check_liveness();
    if (!s.channel->healthy()) failed_seen_ = true;
  }
  next_sweep_ns_ = now_ns + tunables::server_idle_sweep_ms.get() * 1'000'000;
}

void ChannelServer::drop_failed() {
  failed_seen_ = false;
  std::erase_if(channels_, [&](const Served& s) {
    if (s.channel->healthy()) return false;
    if (!s.watched) --unwatched_;
    if (options_.on_channel_closed) options_.on_channel_closed(s.channel->error());
    if (options_.before_destroy) options_.before_destroy(*s.channel);
    return true;
  });
  rebuild_indexes();
}

void ChannelServer::rebuild_indexes() {
  hot_.clear();
  index_of_id_.clear();
  for (std::size_t i = 0; i < channels_.size(); ++i) {
    index_of_id_[channels_[i].id] = i;
    if (channels_[i].hot) hot_.push_back(i);
  }
  if (sweep_cursor_ >= channels_.size()) sweep_cursor_ = 0;
}

void ChannelServer::close_if(const std::function<bool(const Channel&)>& which) {
  // Only closes: the channels are destroyed at the end of the round. close_if is called from
  // request handlers and response callbacks (a step-down), i.e. while run_once iterates over
  // channels_ and a channel's poll() is on the stack; destroying them here was a use-after-free.
  for (auto& s : channels_) {
    if (s.channel->healthy() && which(*s.channel)) {
      s.channel->close();
      failed_seen_ = true;
    }
  }
  // Handshakes under way carry the peer's hello too; progress_pending drops the closed ones.
  for (auto& p : pending_) {
    if (p.channel->healthy() && which(*p.channel)) p.channel->close();
  }
  if (!polling_) drop_failed();
}

void ChannelServer::set_busy_poll(bool busy) {
  options_.busy_poll = busy;
  options_.channel.busy_poll = busy;
}

void ChannelServer::block(int timeout_ms) {
  // The interest set persists: each channel's fd is added once (closing it when the channel goes
  // removes it). Only the arming (fi_trywait) is per block, and only idle rounds block.
  auto add = [&](int fd, std::uint64_t id) {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = id;
    return epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e) == 0 || errno == EEXIST;
  };
  if (!listener_->arm()) return;  // a connection request is waiting
  if (!listener_in_epoll_) listener_in_epoll_ = add(listener_->wait_fd(), 0);
  for (int fd : wake_fds_) {
    if (std::find(wake_fds_in_epoll_.begin(), wake_fds_in_epoll_.end(), fd) !=
        wake_fds_in_epoll_.end()) {
      continue;
    }
    if (add(fd, 0)) wake_fds_in_epoll_.push_back(fd);
  }
  for (std::size_t i = 0; i < channels_.size(); ++i) {
    Served& s = channels_[i];
    if (!s.channel->healthy()) continue;
    if (s.channel->busy_poll()) {
      // Accepted while busy-polling: no wait object, so it is polled every blocking round and
      // the timeout bounds its latency.
      if (!s.hot) {
        s.hot = true;
        hot_.push_back(i);
      }
      continue;
    }
    if (!s.channel->arm()) {
      // Something is already waiting on it: poll it next round instead of sleeping.
      if (!s.hot) {
        s.hot = true;
        s.empty_polls = 0;
        hot_.push_back(i);
      }
      return;
    }
    if (!s.in_epoll) s.in_epoll = add(s.channel->wait_fd(), s.id);
  }
  if (!pending_.empty()) timeout_ms = std::min(timeout_ms, kPendingBlockCapMs);
  std::int64_t to_sweep_ms = (next_sweep_ns_ - steady_now_ns()) / 1'000'000;
  timeout_ms = static_cast<int>(std::clamp<std::int64_t>(to_sweep_ms, 0, timeout_ms));
  epoll_event events[64];
  int n = epoll_wait(epoll_fd_, events, 64, timeout_ms);
  for (int k = 0; k < n; ++k) {
    auto it = index_of_id_.find(events[k].data.u64);
    if (it == index_of_id_.end()) continue;  // the listener or a wake fd
    Served& s = channels_[it->second];
    s.empty_polls = 0;
    if (!s.hot) {
      s.hot = true;
      hot_.push_back(it->second);
    }
  }
}

std::size_t ChannelServer::run_once(int timeout_ms) {
  ++rounds_;
  bool busy = options_.busy_poll;
  polling_ = true;
  std::size_t handled = poll_hot();
  handled += sweep_some();
  if (!busy || rounds_ % kReadyCheckEveryRounds == 0) handled += poll_ready();
  polling_ = false;
  std::int64_t now_ns = 0;
  if (!busy || rounds_ % kClockEveryRounds == 0) {
    now_ns = steady_now_ns();
    if (now_ns >= next_sweep_ns_) {
      polling_ = true;
      sweep_all(now_ns);
      polling_ = false;
    }
  }
  if (!pending_.empty() && (!busy || rounds_ % kPendingCheckEveryRounds == 0)) {
    if (now_ns == 0) now_ns = steady_now_ns();
    progress_pending(now_ns);
  }
  if (!busy || channels_.empty() || rounds_ % kListenerCheckEveryRounds == 0) {
    if (now_ns == 0) now_ns = steady_now_ns();
    accept_pending(now_ns);
  }
  if (failed_seen_) drop_failed();
  if (handled == 0 && !busy) block(timeout_ms);
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
