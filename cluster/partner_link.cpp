#include "cluster/partner_link.hpp"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "cluster/partner_ping.hpp"
#include "transport/clock.hpp"

namespace viaduct::cluster {

PiMutex::PiMutex() {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
  pthread_mutex_init(&mutex_, &attr);
  pthread_mutexattr_destroy(&attr);
}

PiMutex::~PiMutex() {
  pthread_mutex_destroy(&mutex_);
}

Result<std::unique_ptr<PartnerLink>> PartnerLink::start(PartnerLinkConfig config) {
  if (config.key == nullptr) return Status(Code::kInvalidArgument, "partner link: no cluster key");
  auto sock = failover::UdpSocket::bind(config.local);
  if (!sock) {
    return Status(sock.status().code(),
                  "partner link: UDP " + config.local.to_string() + ": " + sock.status().message());
  }
  // Connected: the kernel delivers only the partner's datagrams, and reports its port
  // unreachable (ECONNREFUSED) once its process is gone.
  if (::connect(sock.value().fd(), reinterpret_cast<const sockaddr*>(&config.partner.addr),
                config.partner.len) != 0) {
    return Status(Code::kInvalidArgument, "partner link: connect " + config.partner.to_string());
  }
  std::unique_ptr<PartnerLink> link(new PartnerLink());  // private constructor
  link->config_ = std::move(config);
  link->socket_ = std::move(sock.value());
  link->probe_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (link->probe_fd_ < 0) return Status(Code::kResource, "partner link: eventfd");
  link->thread_ = std::thread([raw = link.get()] { raw->run(); });
  return link;
}

PartnerLink::~PartnerLink() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
  probe_.reset();
  if (probe_fd_ >= 0) ::close(probe_fd_);
}

void PartnerLink::announce(bool active, std::uint64_t epoch, bool drop_sync,
                           std::uint64_t active_sync_gen) {
  std::lock_guard lock(mutex_);
  own_active_ = active;
  own_epoch_ = epoch;
  own_drop_sync_ = drop_sync;
  own_sync_gen_ = active_sync_gen;
}

PartnerView PartnerLink::view() const {
  std::lock_guard lock(mutex_);
  return view_;
}

PartnerLinkStats PartnerLink::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void PartnerLink::send(const PartnerDatagram& d) {
  std::array<std::byte, kPartnerDatagramBytes> out;
  encode_partner_datagram(d, *config_.key, out);
  // ECONNREFUSED from an earlier datagram may surface here too; the receive path records it.
  (void)::send(socket_.fd(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

// Our state, as every datagram announces it (mutex_ held).
static PartnerDatagram own_state(PartnerMessage type, const std::string& name, bool active,
                                 std::uint64_t epoch, bool drop_sync, std::uint64_t active_gen,
                                 std::uint64_t in_sync_gen) {
  PartnerDatagram d;
  d.type = type;
  d.name = name;
  d.epoch = epoch;
  if (active) {
    d.flags |= kPartnerFlagActive;
    if (drop_sync) d.flags |= kPartnerFlagDropSync;
    d.sync_gen = active_gen;
  } else {
    if (in_sync_gen != 0) d.flags |= kPartnerFlagInSync;
    d.sync_gen = in_sync_gen;
  }
  return d;
}

void PartnerLink::send_ping(std::int64_t now) {
  std::uint64_t nonce = 0;
  randombytes_buf(&nonce, sizeof(nonce));
  PartnerDatagram d;
  {
    std::lock_guard lock(mutex_);
    d = own_state(PartnerMessage::kPing, config_.name, own_active_, own_epoch_, own_drop_sync_,
                  own_sync_gen_, in_sync_gen());
    recent_[next_recent_++ % recent_.size()] = {nonce, now};
    ++stats_.pings_sent;
  }
  d.nonce = nonce;
  send(d);
}

void PartnerLink::handle_datagram(std::span<const std::byte> bytes, std::int64_t now) {
  auto d = decode_partner_datagram(bytes, *config_.key);
  std::unique_lock lock(mutex_);
  if (!d || d->name != config_.name) {
    ++stats_.rejected;
    return;
  }
  if (d->type == PartnerMessage::kPing) {
    PartnerDatagram pong = own_state(PartnerMessage::kPong, config_.name, own_active_, own_epoch_,
                                     own_drop_sync_, own_sync_gen_, in_sync_gen());
    pong.nonce = d->nonce;
    lock.unlock();
    send(pong);
    return;
  }
  // A pong counts only as the answer to one of our recent pings (no replay can fake liveness).
  bool ours = false;
  for (auto& sent : recent_) {
    if (sent.nonce == d->nonce && sent.sent_ns != 0 &&
        now - sent.sent_ns < config_.takeover_after_ms * 1'000'000) {
      sent.sent_ns = 0;  // one answer per ping
      ours = true;
      break;
    }
  }
  if (!ours) {
    ++stats_.rejected;
    return;
  }
  ++stats_.pongs_heard;
  bool news = (d->flags & kPartnerFlagActive) != view_.active || d->epoch != view_.epoch ||
              view_.heard_ns == 0;
  view_.heard_ns = now;
  view_.active = (d->flags & kPartnerFlagActive) != 0;
  view_.epoch = d->epoch;
  view_.in_sync = (d->flags & kPartnerFlagInSync) != 0;
  view_.drop_sync = (d->flags & kPartnerFlagDropSync) != 0;
  view_.sync_gen = d->sync_gen;
  if (view_.drop_sync) {
    // Our active is about to serve alone: from now on we may lack what it acknowledges.
    std::uint64_t mine = in_sync_gen();
    if (mine != 0 && mine <= d->sync_gen) {
      in_sync_gen_.store(0, std::memory_order_release);
      news = true;
    }
  }
  lock.unlock();
  if (news && config_.on_news) config_.on_news();
}

void PartnerLink::run() {
  if (config_.realtime_priority > 0) {
    sched_param param{};
    param.sched_priority = config_.realtime_priority;
    realtime_.store(pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0);
    if (realtime_.load()) probe_ = HostStallProbe::start(config_.realtime_priority, probe_fd_);
  }
  const std::int64_t interval_ns = config_.interval_ms * 1'000'000;
  const std::int64_t pause_ns = config_.takeover_after_ms * 500'000;          // half the deadline
  const std::int64_t out_of_sync_ns = config_.takeover_after_ms * 2'000'000;  // twice it
  std::int64_t last = steady_now_ns();
  std::int64_t next_ping = last;
  std::array<std::byte, 256> buf;
  // A gap in this thread's own run longer than expected: the process was paused. Acted on before
  // anything that arrived meanwhile is looked at: a thread stopped inside poll() first finds the
  // pings its partner sent before dying, and their refused pongs must not read as a crash that
  // we, in sync as of before the pause, may take over from (found by the fault run).
  auto note_gap = [&](std::int64_t from, std::int64_t to, std::int64_t expected) {
    std::int64_t gap = to - from - expected;
    if (gap <= pause_ns) return;
    if (gap >= out_of_sync_ns && in_sync_gen() != 0)
      in_sync_gen_.store(0, std::memory_order_release);
    {
      std::lock_guard lock(mutex_);
      view_.pause_end_ns = to;
      view_.pause_ns = gap;
    }
    if (config_.on_news) config_.on_news();
  };
  while (!stop_.load(std::memory_order_relaxed)) {
    std::int64_t now = steady_now_ns();
    note_gap(last, now, 0);
    last = now;
    if (now >= next_ping) {
      send_ping(now);
      next_ping = std::max(next_ping + interval_ns, now);
    }
    std::array<pollfd, 2> p{pollfd{socket_.fd(), POLLIN, 0}, pollfd{probe_fd_, POLLIN, 0}};
    int wait_ms = static_cast<int>(std::max<std::int64_t>(1, (next_ping - now) / 1'000'000));
    if (probe_round_ != 0) wait_ms = 1;  // a CPU has not answered yet: look again soon
    {
      // Near the deadline, look every millisecond: the silence counts only up to our last look
      // (PartnerView::checked_ns), which must not lag a ping interval behind.
      std::lock_guard lock(mutex_);
      if (view_.heard_ns != 0 && now - view_.heard_ns > pause_ns) wait_ms = 1;
    }
    (void)::poll(p.data(), p.size(), wait_ms);
    std::int64_t woke = steady_now_ns();
    note_gap(now, woke, std::int64_t{wait_ms} * 1'000'000);
    last = woke;
    // Bounded: a flood of datagrams must not keep this thread from pinging.
    // The process may be stopped anywhere, not only inside poll(): every observation first
    // checks the clock against the last one, so that a pause is acted on (sync dropped) before
    // anything read after it. A passive frozen here, past its active's kill, read the refusal
    // and took over as in sync (found by the fault run: freeze the passive, kill the active).
    auto observe = [&] {
      std::int64_t t = steady_now_ns();
      note_gap(last, t, 0);
      last = t;
      return t;
    };
    // Up to when the socket was read empty (or, under a flood, read 64 times): what the partner
    // sent before then has been looked at. Taken before each read, so that a datagram arriving
    // during it is not counted as seen.
    std::int64_t checked = 0;
    for (int i = 0; i < 64; ++i) {
      checked = steady_now_ns();
      ssize_t n = ::recv(socket_.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
      std::int64_t t = observe();
      if (n < 0) {
        if (errno == ECONNREFUSED) {
          {
            std::lock_guard lock(mutex_);
            view_.refused_ns = t;
          }
          if (config_.on_news) config_.on_news();
          continue;
        }
        break;  // EAGAIN (nothing waiting) or a transient error
      }
      handle_datagram({buf.data(), static_cast<std::size_t>(n)}, t);
    }
    {
      std::lock_guard lock(mutex_);
      view_.checked_ns = checked;
    }
    if (probe_) watch_host(observe());
  }
}

void PartnerLink::watch_host(std::int64_t now) {
  // A CPU that needs longer than this to run a real-time thread was not running. Not less than a
  // quarter of the takeover deadline: waking an idle virtual CPU goes through the hypervisor and
  // took 2-5 ms now and then (each such "stall" restarted the silence and delayed the takeover
  // after a SIGSTOP to 50-170 ms), and a shorter stall cannot silence a partner for a deadline.
  const std::int64_t kStallNs =
      std::max<std::int64_t>(2'000'000, config_.takeover_after_ms * 250'000);
  std::uint64_t drained = 0;
  (void)!::read(probe_fd_, &drained, sizeof(drained));
  if (probe_round_ != 0) {
    std::int64_t waited = now - probe_sent_ns_;
    if (probe_->all_answered(probe_round_)) {
      probe_round_ = 0;
      std::lock_guard lock(mutex_);
      view_.host_stalled = false;
      if (waited > kStallNs) {
        // The partner's silence began, or went on, while part of this host was not running: count
        // it from now, as after a pause of our own.
        view_.pause_end_ns = std::max(view_.pause_end_ns, now);
        ++stats_.host_stalls;
        ++view_.host_stalls;
        view_.last_host_stall_ns = waited;
        stats_.longest_host_stall_ns = std::max(stats_.longest_host_stall_ns, waited);
      }
    } else if (waited > kStallNs) {
      std::lock_guard lock(mutex_);
      view_.host_stalled = true;
    }
    return;
  }
  std::int64_t heard;
  {
    std::lock_guard lock(mutex_);
    heard = view_.heard_ns;
  }
  // Only while the partner is silent past half the deadline: a healthy pair never pokes.
  // At most once per ping interval.
  if (heard != 0 && now - heard > config_.takeover_after_ms * 500'000 &&
      now - probe_sent_ns_ >= config_.interval_ms * 1'000'000) {
    probe_round_ = probe_->poke();
    probe_sent_ns_ = now;
  }
}

}  // namespace viaduct::cluster
