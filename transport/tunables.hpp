// The transport's tunables, declared once here (see tunable.hpp for how values are set).
#pragma once

#include "transport/tunable.hpp"

namespace viaduct::transport::tunables {

extern Tunable vi_send_queue_depth;
extern Tunable vi_recv_queue_depth;
extern Tunable connect_timeout_ms;
extern Tunable verbs_retry_count;
extern Tunable verbs_rnr_retry_count;
extern Tunable verbs_ack_timeout_exponent;
extern Tunable verbs_inline_bytes;
extern Tunable tcp_user_timeout_ms;

}  // namespace viaduct::transport::tunables
