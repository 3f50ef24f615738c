// The two decisions that decide whether acknowledged work can be lost, as pure functions of what
// an instance knows (tested without I/O; the master's verdict plugs in here next):
//   - may a passive take over?  Only when it holds everything the active acknowledged (in sync),
//     and the active is gone (its port refused us) or silent past the takeover deadline while we
//     ourselves, and every CPU of our host, kept running (a silence counts only up to when our
//     link last looked for the partner's datagrams);
//   - may an active stop waiting for its passive and acknowledge alone?  Only when the passive can
//     no longer take over: its process is gone, it said it counts itself out of sync, or it has
//     been silent for four takeover deadlines (a passive away for two counts itself out of sync
//     when it returns: cluster/partner_link.hpp), and never right after our own pause, when the
//     passive may have taken over meanwhile.
// Every time is steady_clock nanoseconds; 0 means "never".
#pragma once

#include <cstdint>
#include <string_view>

namespace viaduct::cluster {

struct PassiveFacts {
  std::int64_t now_ns = 0;
  std::int64_t started_ns = 0;
  std::int64_t heard_ns = 0;  // the partner's last authenticated pong
  // When our link last looked for the partner's datagrams and left none unread: a silence is
  // known only up to then. A link thread not scheduled (its virtual CPU stolen) has not looked,
  // while this decision may run on another CPU: measured to `now`, its unread pongs would read
  // as the partner's silence.
  std::int64_t checked_ns = 0;
  bool partner_active = false;    // in that pong
  std::int64_t refused_ns = 0;    // the partner's port refused us (its process is gone)
  std::int64_t pause_end_ns = 0;  // we ourselves were paused until then
  bool host_stalled = false;      // a CPU of this host is not running now (a silence may be ours)
  std::int64_t passive_since_ns = 0;
  bool in_sync = false;          // we hold everything the active acknowledged
  bool unclean_allowed = false;  // an operator accepts losing what we may lack
  std::int64_t takeover_after_ns = 0;
  std::int64_t startup_grace_ns = 0;
};

enum class TakeoverVerdict : std::uint8_t {
  kStay,
  kPartnerCrashed,  // take over now
  kPartnerSilent,   // take over now
  kOutOfSync,       // the partner is gone, but we may lack acknowledged work: refuse to serve
};
std::string_view takeover_verdict_name(TakeoverVerdict v);
TakeoverVerdict decide_takeover(const PassiveFacts& f);

struct ActiveFacts {
  std::int64_t now_ns = 0;
  std::int64_t heard_ns = 0;
  std::int64_t checked_ns = 0;   // as in PassiveFacts
  bool partner_in_sync = false;  // in that pong
  std::uint64_t partner_sync_gen = 0;
  std::uint64_t sync_gen = 0;  // our current replication generation
  std::int64_t refused_ns = 0;
  std::int64_t pause_end_ns = 0;
  std::int64_t drop_requested_ns = 0;  // when we asked the passive to count itself out of sync
  bool may_be_replaced = false;        // paused with an in-sync passive, not heard from it since
  std::int64_t takeover_after_ns = 0;
};

enum class AloneVerdict : std::uint8_t {
  kHold,              // keep waiting for the passive
  kPartnerGone,       // its process is gone: a restarted one is out of sync
  kPartnerOutOfSync,  // it said so, after we asked
  kPartnerSilent,     // silent for four takeover deadlines
};
std::string_view alone_verdict_name(AloneVerdict v);
AloneVerdict may_serve_alone(const ActiveFacts& f);

}  // namespace viaduct::cluster
