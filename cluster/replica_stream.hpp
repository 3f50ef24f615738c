// The active's replication stream to its passive partner: every request the active executes goes
// to the passive with its answer, and the answer is held until the passive has applied it
// (acknowledgements come back in order on one channel). A stream starts with the whole state
// (a snapshot); once the passive acknowledged that, it is in sync.
//
// The replica channel is connected and authenticated on a connector thread of its own, in a
// domain of its own (a connect to a frozen partner blocks, and serving must not), then handed to
// the serving thread. Everything else runs on the serving thread.
//
// What the stream never decides: whether to serve alone (cluster/takeover_policy.hpp, asked by the
// ServiceServer) and role changes. A passive that answers "stale epoch" is reported through
// newer_epoch() and acted on by the owner after the round, never inside the ack callback.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cluster/member_auth.hpp"
#include "transport/channel.hpp"

namespace viaduct::cluster {

struct ReplicaStreamConfig {
  std::string name;         // the service's
  std::string partner_uri;  // the passive's listen address
  const ClusterKey* key = nullptr;
  std::int64_t ping_interval_ms = 5;  // paces connect attempts
};

class ReplicaStream {
 public:
  ReplicaStream() = default;  // no partner: never opens
  ~ReplicaStream();
  // Starts the connector thread; a stream is asked for with want_connection().
  void start(ReplicaStreamConfig config);
  ReplicaStream(const ReplicaStream&) = delete;
  ReplicaStream& operator=(const ReplicaStream&) = delete;

  // --- the stream ---
  // A stream is open (it may have failed since: broken()).
  [[nodiscard]] bool open() const { return channel_ != nullptr; }
  // Sending failed, an ack reported an error, or the channel is unhealthy.
  [[nodiscard]] bool broken() const {
    return failed_ || (channel_ != nullptr && !channel_->healthy());
  }
  // The passive acknowledged this stream's snapshot.
  [[nodiscard]] bool partner_synced() const { return partner_synced_; }
  // When the passive's pongs start telling its sync state for this stream (see on_ack).
  [[nodiscard]] std::int64_t synced_at_ns() const { return synced_at_ns_; }
  [[nodiscard]] std::uint64_t sync_gen() const { return sync_gen_; }
  [[nodiscard]] std::uint64_t replicated() const { return replicated_; }
  [[nodiscard]] std::uint64_t resyncs() const { return resyncs_; }
  // An authenticated passive answered that it is at a newer epoch than `epoch` (0: none).
  [[nodiscard]] std::uint64_t newer_epoch() const { return newer_epoch_; }
  void clear_newer_epoch() { newer_epoch_ = 0; }
  // Sending on the stream failed or an ack said it could not be applied (answers are held).
  [[nodiscard]] bool failed() const { return failed_; }
  // We were replaced: every held answer is dropped unanswered (the new active may lack their
  // effect; their clients re-send there), and the stream counts as failed until closed.
  void abandon() {
    held_count_ = 0;
    failed_ = true;
    partner_synced_ = false;
  }

  // Asks the connector for a fresh connection, paced (every 20 ping intervals at most); its hello
  // carries `epoch`.
  void want_connection(std::int64_t now, std::uint64_t epoch);
  // A connection the connector made is ready: start a stream on it at `epoch` with a snapshot:
  // `snapshot` fills the application's state and the serialized reply cache. Returns false if
  // none is ready (or it broke while waiting).
  using SnapshotFn =
      std::function<void(std::vector<std::byte>& state, std::vector<std::byte>& replies)>;
  bool start_if_connected(std::uint64_t epoch, const SnapshotFn& snapshot);
  // Ends the stream (not its held answers); a new one is not asked for before one ping interval.
  void close();
  // Progress the channel; acknowledgements release held answers.
  std::size_t poll() { return channel_ != nullptr ? channel_->poll() : 0; }

  // --- answers (serving thread) ---
  // Sends (kind apply) the executed request with its answer, and holds the answer until the
  // passive acknowledged it. Without a healthy stream the answer is held (no replica of its own).
  void replicate_and_hold(transport::Channel& client, std::uint64_t request_id, std::uint64_t epoch,
                          std::uint64_t client_id, std::uint64_t seq,
                          std::span<const std::byte> request, std::uint32_t app_status,
                          std::span<const std::byte> response);
  // Holds an answer behind those already held (an answer from the reply cache: it may be one of
  // them), released in order.
  void hold(transport::Channel& client, std::uint64_t request_id, std::uint32_t app_status,
            std::span<const std::byte> response);
  [[nodiscard]] std::size_t held() const { return held_count_; }
  // When the oldest held answer was held (0: none).
  [[nodiscard]] std::int64_t oldest_held_ns() const {
    return held_count_ == 0 ? 0 : held_[held_head_].sent_ns;
  }
  // Answers every held one now (serving alone: the passive can no longer take over).
  void release_all();
  // A client channel is about to be destroyed.
  void forget(const transport::Channel& gone);

 private:
  struct Held {  // an answer waiting for the partner to apply its request
    transport::Channel* channel = nullptr;  // null once that client's channel is gone
    std::uint64_t request_id = 0;
    std::uint64_t replica_seq = 0;  // 0: no replica of its own (released after those before it)
    std::int64_t sent_ns = 0;
    std::uint32_t app_status = 0;
    std::vector<std::byte> response;  // capacity reused
  };
  static void on_ack(void* user, const transport::Response& r);
  // Sends buf_ as replica `seq`, or queues it behind a rendezvous-sized one still unacknowledged.
  void send_or_queue(std::uint64_t seq);
  void send_queued();
  Held& push(transport::Channel& client, std::uint64_t request_id, std::uint32_t app_status,
             std::span<const std::byte> response);
  void release_front();
  void connector_loop();  // connector thread
  void connect();         // connector thread

  ReplicaStreamConfig config_;
  std::unique_ptr<transport::Domain> domain_;  // channel_'s; outlives it
  std::unique_ptr<transport::Channel> channel_;
  bool failed_ = false;
  std::uint64_t sync_gen_ = 0;
  bool partner_synced_ = false;
  std::int64_t synced_at_ns_ = 0;
  std::uint64_t next_seq_ = 1;  // replicas sent on channel_ (acks come back in order)
  std::uint64_t acked_seq_ = 0;
  std::uint64_t epoch_ = 0;        // the epoch the stream runs at
  std::uint64_t newer_epoch_ = 0;  // a passive said it is past epoch_
  std::uint64_t replicated_ = 0;
  std::uint64_t resyncs_ = 0;
  std::int64_t next_attempt_ns_ = 0;
  std::vector<Held> held_;  // ring, oldest at held_head_
  std::size_t held_head_ = 0;
  std::size_t held_count_ = 0;
  std::vector<std::byte> buf_;
  // Order: the passive must apply replicas in the order they were executed. A frame larger than
  // the channel's inline limit goes by rendezvous and reaches the passive's handler only when its
  // read completes, after inline frames sent behind it (a snapshot of 64 KiB applied after the
  // requests that followed it erased them: acknowledged work lost, found by the fault run). So
  // nothing is sent behind such a frame until it is acknowledged; later frames wait here, in order.
  std::uint64_t barrier_seq_ = 0;  // a rendezvous-sized replica not yet acknowledged (0: none)
  struct Queued {
    std::uint64_t seq = 0;
    std::vector<std::byte> frame;
  };
  std::vector<Queued> queued_;  // in seq order; frames' capacity reused
  std::size_t queued_count_ = 0;
  std::vector<std::byte> snapshot_;
  std::vector<std::byte> snapshot_replies_;

  // Connector thread: sleeps until asked, connects and authenticates, hands over under the mutex.
  std::mutex handoff_mutex_;
  std::unique_ptr<transport::Domain> handoff_domain_;
  std::unique_ptr<transport::Channel> handoff_;
  std::atomic<bool> handoff_ready_{false};
  std::atomic<bool> want_{false};
  std::atomic<std::uint64_t> hello_epoch_{0};
  std::mutex connector_mutex_;
  std::condition_variable connector_wake_;
  bool stop_ = false;  // under connector_mutex_
  std::thread connector_;
};

}  // namespace viaduct::cluster
