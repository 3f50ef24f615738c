#include "cluster/takeover_policy.hpp"

#include <algorithm>

namespace viaduct::cluster {

std::string_view takeover_verdict_name(TakeoverVerdict v) {
  switch (v) {
    case TakeoverVerdict::kStay:
      return "stay";
    case TakeoverVerdict::kPartnerCrashed:
      return "partner-refused";
    case TakeoverVerdict::kPartnerSilent:
      return "partner-silent";
    case TakeoverVerdict::kOutOfSync:
      return "out-of-sync";
  }
  return "?";
}

TakeoverVerdict decide_takeover(const PassiveFacts& f) {
  bool gone = false;
  bool crashed = false;
  if (f.heard_ns == 0) {
    // Never heard: the active may never have started. Without its snapshot we hold nothing.
    gone = f.now_ns - std::max(f.started_ns, f.pause_end_ns) > f.startup_grace_ns;
  } else if (f.partner_active) {
    crashed = f.refused_ns > f.heard_ns && f.refused_ns > f.passive_since_ns;
    // The partner's silence counts from the latest of: its last answer, our becoming passive,
    // and our own resumption after a pause (we were away, not it).
    std::int64_t last = std::max({f.heard_ns, f.passive_since_ns, f.pause_end_ns});
    // While a CPU of this host is not running, a silence proves nothing (a stolen virtual CPU
    // silences a partner here as a freeze would); its end restarts the count (pause_end_ns).
    // Only as far as our link has looked: pongs it has not read yet are no silence.
    std::int64_t known_until = std::min(f.now_ns, f.checked_ns);
    gone = crashed || (!f.host_stalled && known_until - last > f.takeover_after_ns);
  }
  if (!gone) return TakeoverVerdict::kStay;
  if (!f.in_sync && !f.unclean_allowed) return TakeoverVerdict::kOutOfSync;
  return crashed ? TakeoverVerdict::kPartnerCrashed : TakeoverVerdict::kPartnerSilent;
}

std::string_view alone_verdict_name(AloneVerdict v) {
  switch (v) {
    case AloneVerdict::kHold:
      return "hold";
    case AloneVerdict::kPartnerGone:
      return "partner-gone";
    case AloneVerdict::kPartnerOutOfSync:
      return "partner-out-of-sync";
    case AloneVerdict::kPartnerSilent:
      return "partner-silent";
  }
  return "?";
}

AloneVerdict may_serve_alone(const ActiveFacts& f) {
  if (f.may_be_replaced) return AloneVerdict::kHold;
  if (f.refused_ns != 0 && f.refused_ns > f.heard_ns) return AloneVerdict::kPartnerGone;
  if (f.drop_requested_ns != 0 && f.heard_ns > f.drop_requested_ns &&
      (!f.partner_in_sync || f.partner_sync_gen < f.sync_gen)) {
    return AloneVerdict::kPartnerOutOfSync;
  }
  // Silent since its last answer (or, never heard, since we asked it to drop), counted from our own
  // last pause.
  std::int64_t last = std::max(f.heard_ns != 0 ? f.heard_ns : f.drop_requested_ns, f.pause_end_ns);
  std::int64_t known_until = std::min(f.now_ns, f.checked_ns);
  if (last != 0 && known_until - last >= 4 * f.takeover_after_ns) {
    return AloneVerdict::kPartnerSilent;
  }
  return AloneVerdict::kHold;
}

}  // namespace viaduct::cluster
