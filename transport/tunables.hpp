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
// Bounds on what a peer may make a channel allocate (see channel.hpp, staging_budget.hpp).
extern Tunable channel_max_concurrent_reads;
extern Tunable channel_max_rendezvous_requests;
extern Tunable channel_max_staging_bytes;
extern Tunable channel_max_idle_staging_bytes;
extern Tunable domain_max_staging_bytes;
// What peers may make a server's loop hold (see channel_server.hpp).
extern Tunable server_max_connections;
extern Tunable server_max_pending_accepts;
extern Tunable server_half_open_timeout_ms;
extern Tunable server_idle_sweep_ms;

}  // namespace viaduct::transport::tunables
