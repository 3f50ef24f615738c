// The link between two partners: a thread of its own that pings the partner over authenticated UDP
// (cluster/partner_ping.hpp), answers its pings, and tells the serving loop what it knows — when
// the partner was last heard, its role, epoch and sync state, whether its process is gone
// (ICMP port unreachable), and whether this process itself was paused.
//
// Why a thread of its own, at real-time priority: on a busy host the serving loop (and the
// partner's) can wait tens of milliseconds for a core, and a ping answered that late looks like a
// dead partner (21 false takeovers in 180 s at load average 5-10 before this). The link thread
// only blocks in poll() and runs for microseconds per datagram, so SCHED_FIFO costs the host
// nothing, and corosync does the same for its totem thread. Where real-time priority is not
// permitted it runs at normal priority and says so (realtime() is false).
//
// Own pauses: the thread wakes at least once per ping interval, so a gap in its own loop longer
// than half the takeover deadline can only mean this whole process was stopped (SIGSTOP, a VM
// pause). The serving loop uses it to restart the partner's silence (we were away, not it), and a
// passive paused for twice the takeover deadline counts itself out of sync (its active may have
// given up on it and served alone meanwhile).
//
// Host stalls: while the partner is silent past half the deadline, the link asks every CPU of
// this host whether it is running (cluster/host_stall_probe.hpp). A virtual CPU taken away by the
// hypervisor silences a partner on the same host exactly as a freeze would, while this thread
// sees no pause of its own; the serving loop holds its decision while a CPU is stalled, and counts
// the silence from the stall's end.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cluster/host_stall_probe.hpp"
#include "cluster/member_auth.hpp"
#include "failover/udp_socket.hpp"
#include "transport/clock.hpp"

namespace viaduct::cluster {

struct PartnerLinkConfig {
  std::string name;
  failover::UdpEndpoint local;    // bound here
  failover::UdpEndpoint partner;  // the only source accepted
  const ClusterKey* key = nullptr;
  std::int64_t interval_ms = 5;
  std::int64_t takeover_after_ms = 30;
  int realtime_priority = 10;     // SCHED_FIFO priority; 0: normal scheduling
  std::function<void()> on_news;  // something the serving loop should act on now (any thread)
};

// What the link knows, as of the last datagram.
struct PartnerView {
  std::int64_t heard_ns = 0;  // last authenticated pong to one of our recent pings (0: never)
  // When the link thread last read the socket and left nothing unread (0: never). The partner's
  // silence is known up to here, not up to the reader's clock: see PassiveFacts::checked_ns.
  std::int64_t checked_ns = 0;
  bool active = false;  // the partner's role and epoch in that pong
  std::uint64_t epoch = 0;
  bool in_sync = false;  // a passive partner holds everything we acknowledged, as of sync_gen
  std::uint64_t sync_gen = 0;
  bool drop_sync = false;         // an active partner asks us to count ourselves out of sync
  std::int64_t refused_ns = 0;    // the partner's port was unreachable (its process is gone)
  std::int64_t pause_end_ns = 0;  // when this process last resumed from a pause
  std::int64_t pause_ns = 0;      // how long that pause was
  // A CPU of this host is not running right now (cluster/host_stall_probe.hpp), while the
  // partner is silent: its silence may be ours. A stall that ended counts as a pause of ours.
  bool host_stalled = false;
  std::uint64_t host_stalls = 0;        // stalls seen so far
  std::int64_t last_host_stall_ns = 0;  // how long the last one held a CPU
};

struct PartnerLinkStats {
  std::uint64_t pings_sent = 0;
  std::uint64_t pongs_heard = 0;
  std::uint64_t rejected = 0;     // malformed, bad MAC, wrong name, or no ping of ours to answer
  std::uint64_t host_stalls = 0;  // CPUs of this host found not running during a silence
  std::int64_t longest_host_stall_ns = 0;
};

// A mutex with priority inheritance: the link thread runs at real-time priority and shares state
// with the serving loop, which does not. With a plain mutex, a serving loop preempted by a CPU hog
// while holding it blocks the link thread for as long (priority inversion: false takeovers on a
// busy host). With inheritance, the holder runs at the waiter's priority until it lets go.
class PiMutex {
 public:
  PiMutex();
  ~PiMutex();
  PiMutex(const PiMutex&) = delete;
  PiMutex& operator=(const PiMutex&) = delete;
  void lock() { pthread_mutex_lock(&mutex_); }
  void unlock() { pthread_mutex_unlock(&mutex_); }

 private:
  pthread_mutex_t mutex_;
};

class PartnerLink {
 public:
  static Result<std::unique_ptr<PartnerLink>> start(PartnerLinkConfig config);
  ~PartnerLink();
  PartnerLink(const PartnerLink&) = delete;
  PartnerLink& operator=(const PartnerLink&) = delete;

  // The serving loop's state, announced in every datagram from now on.
  void announce(bool active, std::uint64_t epoch, bool drop_sync, std::uint64_t active_sync_gen);
  // A passive's sync state: the replication generation it holds everything of (0: out of sync).
  // The link clears it by itself (a long pause, or the active's drop-sync).
  void set_in_sync(std::uint64_t gen) { in_sync_gen_.store(gen, std::memory_order_release); }
  [[nodiscard]] std::uint64_t in_sync_gen() const {
    return in_sync_gen_.load(std::memory_order_acquire);
  }
  // Pings the partner at once (any thread): our connection to it just broke. If its process is
  // gone, the port-unreachable answer tells the link thread within microseconds, instead of at
  // the next ping (up to partner_ping_interval_ms later).
  void ping_now() { send_ping(steady_now_ns()); }
  [[nodiscard]] PartnerView view() const;
  [[nodiscard]] PartnerLinkStats stats() const;
  [[nodiscard]] bool realtime() const { return realtime_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint16_t local_port() const { return socket_.local().port(); }

 private:
  PartnerLink() = default;
  void run();
  void send_ping(std::int64_t now);
  void handle_datagram(std::span<const std::byte> bytes, std::int64_t now);
  void send(const struct PartnerDatagram& d);
  void watch_host(std::int64_t now);

  PartnerLinkConfig config_;
  failover::UdpSocket socket_;
  std::atomic<std::uint64_t> in_sync_gen_{0};
  std::atomic<bool> realtime_{false};
  std::atomic<bool> stop_{false};
  // Host stall watch (link thread only).
  std::unique_ptr<HostStallProbe> probe_;
  int probe_fd_ = -1;               // eventfd the probe's threads write to
  std::uint64_t probe_round_ = 0;   // in flight (0: none)
  std::int64_t probe_sent_ns_ = 0;  // when it was poked

  mutable PiMutex mutex_;  // guards everything below
  PartnerView view_;
  PartnerLinkStats stats_;
  bool own_active_ = false;
  std::uint64_t own_epoch_ = 0;
  bool own_drop_sync_ = false;
  std::uint64_t own_sync_gen_ = 0;
  struct SentPing {
    std::uint64_t nonce = 0;
    std::int64_t sent_ns = 0;
  };
  std::array<SentPing, 16> recent_{};  // our last pings: only their pongs count
  std::size_t next_recent_ = 0;

  std::thread thread_;
};

}  // namespace viaduct::cluster
