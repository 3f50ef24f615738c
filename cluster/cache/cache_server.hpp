// A data server of the cache cluster (`viaduct cache-server`): serves the types it owns from a
// read-through, write-through cache over the record store; forwards requests of other types to
// their owner; serves an offline owner's types itself (caching them only temporarily) when it is
// that owner's failover server; follows the master's map.
//
// Who may serve a type, decided per request from the map this server holds:
//   - its owner while online; otherwise the owner's failover server (the next online member of
//     its group); nobody while the owner is "returning" (cluster/cache/cluster_map.hpp);
//   - and only under a valid lease: a grant from the master, counted from when this server
//     asked for it, that says this server's map is the master's current one. A server that was
//     frozen (SIGSTOP) wakes with its lease run out, so it serves nothing from its cache before
//     it has heard the master's news — it may have been marked offline meanwhile, and others
//     may have written its types. The master marks a silent server offline only once the lease
//     it granted ran out (or its process is gone), so a server never serves a value that another
//     one replaced: no reader sees a value older than the last acknowledged write.
//   - and only once it raised the database fences of the types it serves to its map epoch
//     (RecordStore::fence). A lease is checked before a write, not during it: a server frozen
//     between the two, marked offline meanwhile, would otherwise commit its write late, over one
//     that the new owner acknowledged. The fence makes the database refuse that late write.
// A request for a type this server may not serve goes to whoever may (forwarded once; a
// forwarded request is never forwarded again), or is answered kNotServing so the client
// refreshes its map. When forwarding to an online owner fails, the server tells the master;
// a read is then answered from the database directly (always current: writes are acknowledged
// only once committed) and not cached; a write waits for the master's verdict.
//
// Threading: one serving thread (run / run_once) owns everything, the database connection too.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cluster/cache/cache_protocol.hpp"
#include "cluster/cache/cluster_map.hpp"
#include "cluster/cache/control_protocol.hpp"
#include "cluster/cache/record_cache.hpp"
#include "cluster/cache/record_store.hpp"
#include "cluster/member_auth.hpp"
#include "failover/udp_socket.hpp"
#include "transport/channel_server.hpp"
#include "transport/tunable.hpp"

namespace viaduct::cluster::cache {

namespace tunables {
extern Tunable cache_max_bytes;
extern Tunable cache_lease_ms;
extern Tunable cache_forward_timeout_ms;
extern Tunable cache_max_held_requests;
extern Tunable cache_server_busy_poll;
extern Tunable cache_stats_interval_ms;
extern Tunable cache_debug_write_delay_ms;
}  // namespace tunables

struct CacheServerConfig {
  std::string id;
  ClusterMap map;  // the configured cluster; the master's signed copies replace it
  std::string master_id;
  std::string master_control;               // UDP HOST:PORT
  std::string database;                     // record store URI (cluster/cache/record_store.hpp)
  const ClusterKey* cluster_key = nullptr;  // not owned
};

struct CacheServerStats {
  std::uint64_t requests = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t forwarded = 0;
  std::uint64_t forward_failures = 0;
  std::uint64_t served_temporarily = 0;  // requests of an offline owner's types
  std::uint64_t direct_reads = 0;        // reads answered from the database, owner unreachable
  std::uint64_t held = 0;                // writes that waited for the master's verdict
  std::uint64_t not_serving = 0;
  std::uint64_t invalid = 0;
  std::uint64_t reports = 0;
  std::uint64_t bad_datagrams = 0;
  std::uint64_t dropped_temporary = 0;  // entries dropped when their owner came back
  std::uint64_t fenced_writes = 0;      // refused by the database: a newer owner had the type
};

class CacheServer {
 public:
  static Result<std::unique_ptr<CacheServer>> start(const CacheServerConfig& config);
  ~CacheServer();
  CacheServer(const CacheServer&) = delete;
  CacheServer& operator=(const CacheServer&) = delete;

  void run(const std::atomic<bool>& stop);
  std::size_t run_once(int timeout_ms);

  [[nodiscard]] const ClusterMap& map() const { return map_; }
  [[nodiscard]] bool lease_valid() const;
  [[nodiscard]] const CacheServerStats& stats() const { return stats_; }
  [[nodiscard]] std::uint64_t database_queries() const { return store_->queries(); }
  [[nodiscard]] std::string address() const;
  // Events an operator wants to see, one line each ("map 7: s2 offline", "lease lapsed").
  std::function<void(const std::string&)> on_notice;

 private:
  class Dispatcher;
  struct Peer;
  struct Slot;
  enum class Decision : std::uint8_t { kServe, kForward, kNotServing };

  CacheServer() = default;
  void handle(transport::Channel& channel, const transport::IncomingRequest& incoming);
  void dispatch(std::uint32_t slot_index);
  Decision decide(const MapServer& owner, std::uint32_t* target) const;
  // Who serves `owner`'s types under our map: the owner while online, its failover server while
  // offline, nobody (nullptr) while returning.
  [[nodiscard]] const MapServer* server_for(const MapServer& owner) const;
  bool raise_fences(std::int64_t now);
  void serve(transport::Channel& channel, std::uint64_t request_id, const CacheRequest& request,
             std::uint32_t owner, bool direct_only);
  void forward(std::uint32_t slot_index, std::uint32_t target);
  void send_forward(std::uint32_t slot_index, Peer& peer);
  void tend_connects(std::int64_t now);
  static void on_forward_answer(void* user, const transport::Response& response);
  void forward_failed(std::uint32_t slot_index);
  void answer(transport::Channel& channel, std::uint64_t request_id, CacheStatus status,
              std::uint64_t version, std::span<const std::byte> value);
  void answer_slot(std::uint32_t slot_index, CacheStatus status, std::string_view message);
  void release(std::uint32_t slot_index);
  Peer* connect_peer(std::uint32_t target);
  void report(std::uint32_t suspect);
  // Control plane (UDP).
  void poll_control(std::int64_t now);
  void on_control(const ControlMessage& m, const failover::UdpEndpoint& from, std::int64_t now);
  void tend_lease(std::int64_t now);
  void adopt_map(ClusterMap map);
  void send_control(const ControlMessage& m, const failover::UdpEndpoint& to);
  void recheck_waiting(std::int64_t now);
  void notice(const std::string& text);
  void print_stats(std::int64_t now);

  CacheServerConfig config_;
  std::uint32_t self_ = 0;
  ClusterMap map_;
  std::uint64_t own_generation_ = 0;  // the generation our cache of our own types was filled at
  std::unique_ptr<RecordStore> store_;
  std::unique_ptr<RecordCache> cache_;
  std::unique_ptr<transport::Domain> domain_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<transport::ChannelServer> server_;
  failover::UdpSocket control_;
  failover::UdpEndpoint master_;
  failover::PublicKey master_key_{};
  std::vector<std::unique_ptr<Peer>> peers_;  // by map index
  std::vector<Slot> slots_;                   // requests forwarded or waiting for a verdict
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::int64_t> reported_ns_;  // by map index: our last report about it
  std::vector<bool> serving_for_;          // by map index: we serve its types (it is offline)
  // The lease: valid until lease_until_ns_; renewals carry a fresh nonce.
  std::int64_t lease_until_ns_ = 0;
  std::int64_t lease_sent_ns_ = 0;
  std::int64_t next_lease_ns_ = 0;
  std::uint64_t lease_nonce_ = 0;
  bool lease_lapsed_noticed_ = true;
  // The map epoch the database fences of every type we serve were raised to (RecordStore::fence);
  // nothing is served at an epoch until they are. kNotFenced: not yet, or a write was fenced.
  static constexpr std::uint64_t kNotFenced = ~std::uint64_t{0};
  std::uint64_t fenced_epoch_ = kNotFenced;
  std::int64_t next_fence_ns_ = 0;
  std::uint64_t fence_refused_noticed_ = kNotFenced;  // the epoch whose refusal we printed
  std::uint64_t fence_seen_ = 0;  // the highest fence above our map epoch the database showed
  std::int64_t next_stats_ns_ = 0;
  std::vector<std::byte> answer_buf_;
  std::vector<std::byte> datagram_;
  StoredRecord record_;
  CacheServerStats stats_;
};

}  // namespace viaduct::cluster::cache
