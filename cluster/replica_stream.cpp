#include "cluster/replica_stream.hpp"

#include <algorithm>

#include "cluster/partner_protocol.hpp"
#include "transport/clock.hpp"

namespace viaduct::cluster {

void ReplicaStream::start(ReplicaStreamConfig config) {
  config_ = std::move(config);
  connector_ = std::thread([this] { connector_loop(); });
}

ReplicaStream::~ReplicaStream() {
  {
    std::lock_guard lock(connector_mutex_);
    stop_ = true;
  }
  connector_wake_.notify_one();
  if (connector_.joinable()) connector_.join();
  // The channels before their domains (members are destroyed in reverse order of declaration).
  channel_.reset();
  handoff_.reset();
}

void ReplicaStream::connector_loop() {
  std::unique_lock lock(connector_mutex_);
  while (!stop_) {
    connector_wake_.wait(lock, [this] { return stop_ || want_.load(std::memory_order_acquire); });
    if (!want_.exchange(false, std::memory_order_acq_rel)) continue;
    lock.unlock();
    connect();
    lock.lock();
  }
}

void ReplicaStream::connect() {
  auto partner = transport::Address::parse(config_.partner_uri);
  if (!partner) return;
  auto domain = transport::Domain::open(partner.value());
  if (!domain) return;
  auto hello = encode_hello_app(
      {HelloKind::kPartner, hello_epoch_.load(std::memory_order_relaxed), config_.name});
  transport::ChannelOptions options;
  options.hello_app = hello;
  options.busy_poll = true;  // polled by the serving loop, like the clients' channels
  int timeout_ms = static_cast<int>(config_.ping_interval_ms * 10);
  auto c = transport::Channel::connect(*domain.value(), partner.value(), options, timeout_ms);
  if (!c) return;  // the serving loop asks again later
  // Both sides prove they hold the cluster secret before a single replica is sent.
  if (!authenticate_member_connection(*c.value(), *config_.key, config_.name,
                                      std::max(timeout_ms, 200))) {
    return;
  }
  std::lock_guard lock(handoff_mutex_);
  handoff_ = std::move(c.value());  // the old pair (if any) is dropped in this order
  handoff_domain_ = std::move(domain.value());
  handoff_ready_.store(true, std::memory_order_release);
}

void ReplicaStream::want_connection(std::int64_t now, std::uint64_t epoch) {
  if (!connector_.joinable()) return;  // never started: no partner
  hello_epoch_.store(epoch, std::memory_order_relaxed);
  if (handoff_ready_.load(std::memory_order_acquire) || now < next_attempt_ns_) return;
  {
    std::lock_guard lock(connector_mutex_);
    want_.store(true, std::memory_order_release);
  }
  connector_wake_.notify_one();
  next_attempt_ns_ = now + config_.ping_interval_ms * 20 * 1'000'000;
}

bool ReplicaStream::start_if_connected(std::uint64_t epoch, const SnapshotFn& snapshot) {
  if (!handoff_ready_.load(std::memory_order_acquire)) return false;
  std::unique_ptr<transport::Channel> fresh;
  {
    std::lock_guard lock(handoff_mutex_);
    fresh = std::move(handoff_);
    channel_.reset();
    domain_ = std::move(handoff_domain_);
    handoff_ready_.store(false, std::memory_order_release);
  }
  if (!fresh || !fresh->healthy()) return false;  // broke while waiting: asked for again later
  channel_ = std::move(fresh);
  failed_ = false;
  partner_synced_ = false;
  next_seq_ = 1;
  acked_seq_ = 0;
  epoch_ = epoch;
  ++sync_gen_;
  ++resyncs_;
  // The whole state first; every later request follows it on the same ordered channel.
  barrier_seq_ = 0;
  queued_count_ = 0;
  snapshot(snapshot_, snapshot_replies_);
  encode_replica({ReplicaKind::kSnapshot, epoch, sync_gen_, 0, 0, 0, snapshot_replies_, snapshot_},
                 buf_);
  synced_at_ns_ = INT64_MAX;
  send_or_queue(next_seq_++);  // its ack moves acked_seq_ past it
  return true;
}

void ReplicaStream::close() {
  channel_.reset();
  barrier_seq_ = 0;
  queued_count_ = 0;
  failed_ = false;
  partner_synced_ = false;
  next_attempt_ns_ = steady_now_ns() + config_.ping_interval_ms * 1'000'000;
}

ReplicaStream::Held& ReplicaStream::push(transport::Channel& client, std::uint64_t request_id,
                                         std::uint32_t app_status,
                                         std::span<const std::byte> response) {
  if (held_count_ == held_.size()) {
    // Full (only under overload, or at the first requests): grow, keeping the order.
    std::vector<Held> bigger(std::max<std::size_t>(64, held_.size() * 2));
    for (std::size_t i = 0; i < held_count_; ++i) {
      bigger[i] = std::move(held_[(held_head_ + i) % held_.size()]);
    }
    held_ = std::move(bigger);
    held_head_ = 0;
  }
  Held& h = held_[(held_head_ + held_count_++) % held_.size()];
  h.channel = &client;
  h.request_id = request_id;
  h.replica_seq = 0;
  h.sent_ns = steady_now_ns();
  h.app_status = app_status;
  h.response.assign(response.begin(), response.end());
  return h;
}

void ReplicaStream::hold(transport::Channel& client, std::uint64_t request_id,
                         std::uint32_t app_status, std::span<const std::byte> response) {
  (void)push(client, request_id, app_status, response);
}

void ReplicaStream::replicate_and_hold(transport::Channel& client, std::uint64_t request_id,
                                       std::uint64_t epoch, std::uint64_t client_id,
                                       std::uint64_t seq, std::span<const std::byte> request,
                                       std::uint32_t app_status,
                                       std::span<const std::byte> response) {
  Held& h = push(client, request_id, app_status, response);
  // A broken stream holds the answer until the owner decides whether we may serve alone (the
  // passive may still hold an older in-sync state and take over).
  if (channel_ == nullptr || failed_) return;
  encode_replica(
      {ReplicaKind::kApply, epoch, sync_gen_, client_id, seq, app_status, request, response}, buf_);
  h.replica_seq = next_seq_++;
  send_or_queue(h.replica_seq);
}

void ReplicaStream::send_or_queue(std::uint64_t seq) {
  if (failed_) return;
  if (barrier_seq_ != 0 || queued_count_ != 0) {
    if (queued_count_ == queued_.size()) {
      queued_.resize(std::max<std::size_t>(8, queued_.size() * 2));
    }
    Queued& q = queued_[queued_count_++];
    q.seq = seq;
    q.frame.assign(buf_.begin(), buf_.end());
    return;
  }
  // Never busy-waits: a full replica channel (the passive is slow) holds the answer, and the
  // stream is treated as broken (the owner decides, off this path).
  if (!channel_->call_async(buf_, on_ack, this)) {
    failed_ = true;
    return;
  }
  if (buf_.size() > channel_->send_inline_limit()) barrier_seq_ = seq;
}

void ReplicaStream::send_queued() {
  std::size_t sent = 0;
  while (sent < queued_count_ && barrier_seq_ == 0 && !failed_) {
    Queued& q = queued_[sent++];
    if (!channel_->call_async(q.frame, on_ack, this)) {
      failed_ = true;
      break;
    }
    if (q.frame.size() > channel_->send_inline_limit()) barrier_seq_ = q.seq;
  }
  // The rest stay in order at the front (their frames' capacity moves along with them).
  for (std::size_t i = sent; i < queued_count_; ++i) std::swap(queued_[i - sent], queued_[i]);
  queued_count_ -= sent;
}

void ReplicaStream::release_front() {
  Held& h = held_[held_head_];
  if (h.channel != nullptr && h.channel->healthy()) {
    (void)h.channel->respond(h.request_id, h.response, h.app_status);
  }
  h.channel = nullptr;
  held_head_ = (held_head_ + 1) % held_.size();
  --held_count_;
}

void ReplicaStream::release_all() {
  while (held_count_ > 0) release_front();
}

void ReplicaStream::forget(const transport::Channel& gone) {
  for (auto& h : held_) {
    if (h.channel == &gone) h.channel = nullptr;
  }
}

void ReplicaStream::on_ack(void* user, const transport::Response& r) {
  auto* self = static_cast<ReplicaStream*>(user);
  if (self->failed_) return;
  if (!r.status) {
    self->failed_ = true;
    return;
  }
  if (r.app_status == kAppStatusStaleEpoch) {
    // The passive took over (or saw a newer epoch) meanwhile: we must not answer. The epoch it
    // names comes from an authenticated member connection; the owner acts on it after the round.
    std::uint64_t epoch =
        r.payload.size() == 8 ? transport::load_le<std::uint64_t>(r.payload.data()) : 0;
    if (epoch > self->epoch_) self->newer_epoch_ = std::max(self->newer_epoch_, epoch);
    self->failed_ = true;  // at one epoch, both active: the pings' tie rule decides
    return;
  }
  if (r.app_status != 0) {
    self->failed_ = true;  // the partner could not apply it: stop relying on it
    return;
  }
  ++self->acked_seq_;
  if (self->barrier_seq_ != 0 && self->acked_seq_ >= self->barrier_seq_) {
    self->barrier_seq_ = 0;  // the passive applied it: what waited behind it may go now
    self->send_queued();
  }
  if (self->acked_seq_ == 1) {
    // The snapshot is applied: the passive is in sync. Its pongs say so from the next one on
    // (one sent before it applied may still be on its way: give it two ping intervals).
    self->partner_synced_ = true;
    self->synced_at_ns_ = steady_now_ns() + 2 * self->config_.ping_interval_ms * 1'000'000;
  }
  ++self->replicated_;
  while (self->held_count_ > 0) {
    const Held& front = self->held_[self->held_head_];
    if (front.replica_seq == 0 || front.replica_seq > self->acked_seq_) break;
    self->release_front();
  }
}

}  // namespace viaduct::cluster
