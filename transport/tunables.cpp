#include "transport/tunables.hpp"

namespace viaduct::transport::tunables {

Tunable vi_send_queue_depth("transport", "vi_send_queue_depth", 256, 8, 16384,
                            "send queue depth of a virtual interface (descriptors)");
Tunable vi_recv_queue_depth("transport", "vi_recv_queue_depth", 256, 8, 16384,
                            "receive queue depth of a virtual interface (descriptors)");
Tunable connect_timeout_ms("transport", "connect_timeout_ms", 2000, 1, 600000,
                           "default deadline for connect/accept");
// rxe (Soft-RoCE) treats 7 as "retry forever", so a dead peer would never be reported.
Tunable verbs_retry_count("transport", "verbs_retry_count", 6, 0, 6,
                          "RC transport retries before IBV_WC_RETRY_EXC_ERR (7 would be forever)");
Tunable verbs_rnr_retry_count("transport", "verbs_rnr_retry_count", 6, 0, 6,
                              "RC receiver-not-ready retries (7 would be forever)");
// 4.096 us * 2^14 = 67 ms per try; with 6 retries a silent peer is reported in ~0.6-0.7 s on rxe.
Tunable verbs_ack_timeout_exponent(
    "transport", "verbs_ack_timeout_exponent", 14, 1, 31,
    "local ACK timeout = 4.096us * 2^value (RDMA_OPTION_ID_ACK_TIMEOUT)");
Tunable verbs_inline_bytes("transport", "verbs_inline_bytes", 128, 0, 1024,
                           "max_inline_data requested for verbs QPs (bytes)");
Tunable tcp_user_timeout_ms(
    "transport", "tcp_user_timeout_ms", 2000, 0, 600000,
    "TCP_USER_TIMEOUT for socket-based providers where settable (0: kernel default)");

// A peer's rendezvous announcements decide what we register and read; these bound it. An
// announcement over a bound that the peer agreed to (message size, rendezvous credits) cuts the
// peer off with a protocol error; the budgets only make work wait, since an honest but busy peer
// reaches them too.
Tunable channel_max_concurrent_reads(
    "channel", "channel_max_concurrent_reads", 4, 1, 1024,
    "rendezvous reads a channel runs at once; further announced payloads wait their turn");
Tunable channel_max_rendezvous_requests(
    "channel", "channel_max_rendezvous_requests", 64, 1, 65535,
    "rendezvous requests a peer may have announced and not yet seen read (told in the hello; "
    "a peer that sends more is cut off)");
// Per direction: outgoing staging (our payloads the peer reads) and incoming (payloads we read)
// are budgeted apart, so that neither can starve the other into a deadlock.
Tunable channel_max_staging_bytes(
    "channel", "channel_max_staging_bytes", 256LL << 20, 1LL << 20, 1LL << 40,
    "registered rendezvous staging per channel and direction (bounds channel_max_message_bytes)");
Tunable channel_max_idle_staging_bytes(
    "channel", "channel_max_idle_staging_bytes", 32LL << 20, 0, 1LL << 40,
    "staging buffers kept registered for reuse per channel and direction; beyond, released ones "
    "are deregistered");
Tunable domain_max_staging_bytes(
    "transport", "domain_max_staging_bytes", 1LL << 30, 1LL << 20, 1LL << 50,
    "registered rendezvous staging of all channels of one domain, per direction");

// Each connection costs the server registered receive and send slots, an endpoint, a CQ and a
// few fds; a peer that opens many must meet a bound, not the process's fd limit or memory.
Tunable server_max_connections(
    "server", "server_max_connections", 4096, 1, 1 << 20,
    "connections a server holds (established and being set up); further requests are rejected");
Tunable server_max_pending_accepts(
    "server", "server_max_pending_accepts", 128, 1, 65536,
    "connection requests a server sets up at once; further ones are rejected until some finish");
// A connection request whose handshake never completes (the peer vanished, or never meant to
// finish) would otherwise hold an endpoint forever.
Tunable server_half_open_timeout_ms("server", "server_half_open_timeout_ms", 1000, 1, 600000,
                                    "a connection still being set up after this long is dropped");
// Idle channels are not polled every round (that cost grew with every connected client): they are
// swept a few per round, and all of them once per this period, when their keep-alives go out
// too. Keep it well under the peers' keep-alive budget (interval x missed limit).
// A fifth of the default keep-alive interval: a heartbeat goes out at most 20 ms after it is due,
// well inside the budget of five intervals. Each sweep touches every channel, so a thousand idle
// clients swept every 5 ms cost the working ones a visible share of the core.
Tunable server_idle_sweep_ms(
    "server", "server_idle_sweep_ms", 20, 1, 10000,
    "the keep-alives of a server's idle channels are sent and checked this often");

}  // namespace viaduct::transport::tunables
