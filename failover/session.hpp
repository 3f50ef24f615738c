// A client's session with a named service: the network access module. The application calls the
// name; the session finds the active server (MC-SQLR lookup), connects, verifies, and when the
// connection breaks (completion error, disconnect, missed heartbeats) it looks the name up again,
// connects to whoever took over, and re-sends every request still in flight — the application sees
// no error. Requests carry (client id, sequence) so a server that already executed one answers it
// from its reply cache instead of executing it again.
//
// Threading: like a Channel, a Session belongs to one thread; callbacks run inside poll()/call().
// A failover never blocks that thread: it is a state machine (FailoverState) that each poll()
// advances by non-blocking steps (a UDP lookup, a connect running on a helper thread, a proof
// asked over the new channel), so one thread can drive several sessions and the others' calls go
// on while one fails over. Requests issued meanwhile wait in the session (at most max_outstanding)
// and go out when the new server is adopted; each still ends with kTimeout at its deadline.
// call(), the synchronous wrapper, polls until its answer; while the failover waits for a timer,
// a datagram or the helper's connect, it sleeps on that instead, as the blocking failover did.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "failover/background_connector.hpp"
#include "failover/lookup_client.hpp"
#include "failover/server_proof.hpp"
#include "transport/channel.hpp"

namespace viaduct::failover {

namespace tunables {
extern Tunable failover_call_deadline_ms;
extern Tunable failover_connect_timeout_ms;
extern Tunable failover_suspect_after_ms;
extern Tunable failover_probe_interval_us;
extern Tunable failover_warm_standby;
extern Tunable failover_skip_lookup;
extern Tunable failover_partner_wait_ms;
}  // namespace tunables

// Per-session failover settings: two sessions in one process may differ. -1 takes the process
// default (the tunable of the same name, read when the session opens).
struct SessionTuning {
  std::int64_t call_deadline_ms = -1;    // failover_call_deadline_ms
  std::int64_t connect_timeout_ms = -1;  // failover_connect_timeout_ms
  std::int64_t suspect_after_ms = -1;    // failover_suspect_after_ms
  std::int64_t probe_interval_us = -1;   // failover_probe_interval_us
  std::int64_t warm_standby = -1;        // failover_warm_standby (0/1)
  std::int64_t skip_lookup = -1;         // failover_skip_lookup (0/1)
  std::int64_t partner_wait_ms = -1;     // failover_partner_wait_ms
};

struct SessionOptions {
  std::string name;
  std::vector<UdpEndpoint> lookup;  // every responder is asked at once
  std::uint32_t max_outstanding = 256;
  // The service's public key (failover/server_proof.hpp): a server is adopted only once it
  // proves it serves the name at its epoch. Without one the hello is trusted (not recommended:
  // anyone who can answer a lookup can then redirect this session).
  std::optional<PublicKey> server_key;
  SessionTuning tuning;
};

// Where a session is in finding a server. The failover tries the partner our server named first
// (kPartner*: over the warm standby connection, or a fresh connect), and the lookup (kLookingUp,
// kConnecting, kProving) when the partner does not take over, when the hang probe named the new
// active, or when the session has no partner to go to (its first connect). Nothing is adopted
// before the server proved itself (kProving / kPartnerProving).
enum class FailoverState : std::uint8_t {
  kSteady,             // using our channel; or broken with nothing to send (no failover yet)
  kPartnerProving,     // asked the partner (standby or fresh channel) to prove it is active
  kPartnerConnecting,  // a fresh connect to the partner runs on the helper thread
  kPartnerWaiting,     // the partner is not active yet: ask again at the next retry
  kLookingUp,          // lookup datagrams out, waiting for an answer
  kConnecting,         // a connect to the server the answer named runs on the helper thread
  kProving,            // asked the server the answer named to prove it is active
};
const char* failover_state_name(FailoverState state);

// Timings of the last failover, for benchmarks and logs.
struct FailoverTimings {
  std::int64_t noticed_at_ns = 0;  // steady_clock time the session noticed the failure
  double lookup_ms = 0;
  double connect_ms = 0;
  double total_ms = 0;  // from noticing the failure to having re-sent everything
  std::uint32_t replayed = 0;
  std::uint32_t lookups = 0;    // more than 1 when an answer failed verification
  bool from_probe = false;      // found by the hang probe (the connection itself never broke)
  bool used_standby = false;    // continued on the warm standby connection: no connect
  bool skipped_lookup = false;  // went straight to the partner our server named: no lookup
};

class Session {
 public:
  static Result<std::unique_ptr<Session>> open(SessionOptions options);
  ~Session();

  // `fn` runs exactly once per request: with the answer, or with kTimeout once
  // failover_call_deadline_ms passes without any server answering for the name.
  Status call_async(std::span<const std::byte> request, transport::ResponseFn fn, void* user);
  Result<std::size_t> call(std::span<const std::byte> request, std::span<std::byte> response,
                           std::uint32_t* app_status = nullptr);
  std::size_t poll();

  // After each failover, on the thread that polled it through: the timings, the new server's
  // address and its epoch. For the application's own logs and metrics; must not call back into
  // this session.
  std::function<void(const FailoverTimings&, const std::string& server, std::uint64_t epoch)>
      on_failover;

  [[nodiscard]] std::uint64_t failovers() const { return failovers_; }
  [[nodiscard]] const FailoverTimings& last_failover() const { return last_; }
  [[nodiscard]] std::uint64_t epoch() const { return epoch_seen_; }
  [[nodiscard]] std::string server() const { return server_; }
  [[nodiscard]] std::size_t outstanding() const { return outstanding_; }
  [[nodiscard]] FailoverState state() const { return state_; }
  // A failover is under way: requests wait for the next server.
  [[nodiscard]] bool failing_over() const { return state_ != FailoverState::kSteady; }
  [[nodiscard]] std::uint64_t probes_sent() const { return probes_sent_; }
  // Servers that answered but could not prove they serve the name (forged lookup answers).
  [[nodiscard]] std::uint64_t proofs_failed() const { return proofs_failed_; }
  // A warm standby connection to the passive partner is open (failover_warm_standby).
  [[nodiscard]] bool standby_ready() {
    std::lock_guard lock(standby_.mutex);
    return standby_.ready;
  }

 private:
  struct Inflight {
    Session* session = nullptr;
    std::uint64_t seq = 0;
    std::vector<std::byte> frame;  // header + payload, kept for re-sending; capacity reused
    transport::ResponseFn fn = nullptr;
    void* user = nullptr;
    std::int64_t deadline_ns = 0;
    bool active = false;
    bool sent = false;
  };
  // A server being tried: the standby channel, or one the helper thread connected, and the
  // Domain it lives in (declared first: destroyed after the channel).
  struct Candidate {
    std::unique_ptr<transport::Domain> domain;
    std::unique_ptr<transport::Channel> channel;
    std::string uri;
    transport::Address address;
    std::uint64_t min_epoch = 0;                 // what the proof must show to be adopted
    bool standby = false;                        // the warm standby connection (no connect)
    std::optional<ssrp::InstanceRecord> record;  // the lookup answer that named it, if any

    Candidate() = default;
    Candidate(const Candidate&) = delete;
    // Assigning would drop the Domain before the channel in it: clear() instead.
    Candidate& operator=(Candidate&&) = delete;
    // Drops the channel (and its Domain), keeping where it was.
    void drop_channel() {
      channel.reset();
      domain.reset();
      standby = false;
    }
    void clear() {
      channel.reset();
      domain.reset();
      uri.clear();
      address = {};
      min_epoch = 0;
      standby = false;
      record.reset();
    }
  };
  // The proof asked over a candidate: its answer lands here (the callback's user pointer).
  struct ProofAsk {
    transport::SyncCall sync;
    std::array<std::byte, kProofAnswerBytes> answer{};
    ProofNonce nonce{};
    std::int64_t until_ns = 0;
  };
  // The failover under way.
  struct FailoverRun {
    std::int64_t t0 = 0;
    FailoverTimings timings;
    std::int64_t partner_give_up_ns = 0;
    std::int64_t next_attempt_ns = 0;        // kPartnerWaiting: ask the partner again then
    std::int64_t next_partner_probe_ns = 0;  // the lookup asked meanwhile, re-sent then
    std::int64_t lookup_started_ns = 0;
    std::int64_t next_lookup_send_ns = 0;
    std::int64_t lookup_retry_ns = 0;
    std::int64_t connect_started_ns = 0;
  };

  Session() = default;
  static void on_channel_response(void* user, const transport::Response& r);
  void finish(Inflight& slot, const transport::Response& r);
  Status send(Inflight& slot);
  void expire(std::int64_t now);
  void watch_for_takeover(std::int64_t now);
  LookupProbe* lookup_probe();  // opened on first use; nullptr when no socket can be had
  void ask_partner_address();
  static void on_partner_address(void* user, const transport::Response& r);
  void standby_loop();
  std::unique_ptr<transport::Channel> take_standby(const std::string& uri,
                                                   std::unique_ptr<transport::Domain>* domain);
  void resume_on(std::uint64_t epoch);  // adopts candidate_

  // The failover's steps (session_failover in session.cpp): each returns at once.
  void begin_failover(std::int64_t now);
  std::size_t step_failover();
  void abandon_failover();
  void enter_partner(std::int64_t now);
  void try_partner(std::int64_t now);
  void after_partner_attempt(std::int64_t now);
  void enter_lookup(std::int64_t now);
  void step_lookup(std::int64_t now);
  void on_lookup_answer(const LookupAnswer& answer, std::int64_t now);
  void start_connect(const transport::Address& address, std::int64_t now);
  void connect_to_answer(std::int64_t now);  // kConnecting to the server a lookup answer named
  void on_connected(ConnectOutcome outcome, std::int64_t now);
  bool ask_proof(std::int64_t until_ns);
  // The proof's outcome: the proven epoch, 0 for "not active", nullopt for no answer or no proof.
  std::optional<std::uint64_t> proof_result();
  void on_proof(std::optional<std::uint64_t> epoch, std::int64_t now);
  void idle_wait();  // call() only: sleep while the failover only waits for a timer or datagram

  SessionOptions options_;
  std::uint64_t client_id_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t epoch_seen_ = 0;
  std::string server_;
  std::string partner_uri_;  // our server's partner, as it told us: the next failover's target
  LookupCache cache_;
  std::vector<Inflight> inflight_;  // fixed size: pointers to slots stay valid
  std::vector<std::uint32_t> free_;
  std::size_t outstanding_ = 0;
  std::size_t unsent_ = 0;  // active slots with sent == false: poll() scans only when non-zero
  std::unique_ptr<transport::Domain> domain_;  // channel_'s (declared first: destroyed last)
  std::unique_ptr<transport::Channel> channel_;
  bool broken_ = true;  // no usable channel yet
  bool ever_connected_ = false;
  std::uint64_t failovers_ = 0;
  FailoverTimings last_;
  unsigned polls_ = 0;
  // Hang suspicion: a server that stops answering (frozen, overloaded, cut off) keeps its
  // connection open, so nothing breaks for the channel's keep-alive budget. While requests wait
  // longer than failover_suspect_after_ms, the session asks the lookup responders; an answer
  // with a newer epoch means the partner has taken over, and the session fails over to it at
  // once (the answer doubles as the failover's lookup). No newer epoch: keep waiting.
  std::uint64_t completions_ = 0;
  std::uint64_t completions_seen_ = 0;
  std::int64_t last_progress_ns_ = 0;
  std::int64_t next_probe_ns_ = 0;
  std::unique_ptr<LookupProbe> probe_;
  std::optional<LookupAnswer> takeover_answer_;
  std::uint64_t probes_sent_ = 0;
  std::uint64_t proofs_failed_ = 0;
  // Warm standby (failover_warm_standby): after connecting, the session asks the server for its
  // partner's address, and a helper thread connects to that passive ahead of time (in a domain
  // of its own: a connect blocks, and the application's thread must not). A failover whose
  // lookup names that partner continues on the standby connection, without a connect.
  struct Standby {
    std::mutex mutex;
    std::condition_variable wake;
    std::string want_uri;  // session → helper: connect there (empty: nothing wanted)
    std::uint64_t epoch = 0;
    std::unique_ptr<transport::Domain> domain;  // helper → session, with `ready`
    std::unique_ptr<transport::Channel> channel;
    std::string uri;
    bool ready = false;
    bool stop = false;
  };
  Standby standby_;
  std::thread standby_thread_;
  // The failover (FailoverState): its state, the server being tried, the proof asked of it, the
  // lookup socket (fresh for each lookup, so no answer to an earlier question is taken for one),
  // and the helper thread that connects.
  FailoverState state_ = FailoverState::kSteady;
  FailoverRun run_;
  Candidate candidate_;
  ProofAsk proof_;
  std::unique_ptr<LookupProbe> lookup_socket_;
  BackgroundConnector connector_;
};

}  // namespace viaduct::failover
