// Bounded reply cache: a request re-sent after a failover, (client id, sequence) already seen, is
// answered from here instead of being executed twice.
//
// Every bound holds whatever peers send: entries and bytes per client, bytes and clients in all.
// Lookup is O(1) (one hash probe); a store evicts the client's oldest entry, or, over the total
// bounds, the least recently active client. The client id comes from the connection (the server
// binds it to the channel on its first request), so one connection cannot spray ids to evict
// other clients.
#pragma once

#include <algorithm>
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace viaduct::cluster {

struct ReplyCacheLimits {
  std::size_t entries_per_client = 1024;
  std::size_t bytes_per_client = 4u << 20;
  std::size_t total_bytes = 256u << 20;
  std::size_t max_clients = 4096;
};

class ReplyCache {
 public:
  struct Entry {
    std::uint32_t app_status = 0;
    std::vector<std::byte> response;
  };
  explicit ReplyCache(ReplyCacheLimits limits = {}) : limits_(limits) {}
  [[nodiscard]] const Entry* find(std::uint64_t client_id, std::uint64_t seq) const;
  void store(std::uint64_t client_id, std::uint64_t seq, std::uint32_t app_status,
             std::span<const std::byte> response);
  // The cache travels with the active's snapshot, so that a passive that joined after a request
  // was executed still answers its re-send instead of executing it again. Format (version 1):
  //   'VDRC' | version u8 | pad[3] | entry count u32 LE, then per entry:
  //   client id u64 LE | seq u64 LE | app status u32 LE | length u32 LE | response
  // Clients in order of activity (least recent first), each one's entries oldest first; at most
  // `max_bytes`, the most recently active clients kept when over.
  void serialize(std::vector<std::byte>& out, std::size_t max_bytes) const;
  // Replaces the contents with a serialized cache (bounds apply as to any store). A malformed one
  // is refused whole, and the cache left empty.
  bool restore(std::span<const std::byte> bytes);
  void clear();
  [[nodiscard]] std::size_t clients() const { return clients_.size(); }
  [[nodiscard]] std::size_t entries() const { return entries_.size(); }
  [[nodiscard]] std::size_t bytes() const { return total_bytes_; }

 private:
  struct Key {
    std::uint64_t client_id;
    std::uint64_t seq;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      return std::hash<std::uint64_t>{}(k.client_id * 0x9E3779B97F4A7C15ull ^ k.seq);
    }
  };
  // A client's sequence numbers, oldest first: a ring that grows to the per-client bound and
  // then only turns (no allocation per request once warm, unlike a deque's blocks).
  class SeqRing {
   public:
    [[nodiscard]] bool empty() const { return count_ == 0; }
    [[nodiscard]] std::size_t size() const { return count_; }
    [[nodiscard]] std::uint64_t front() const { return slots_[head_]; }
    [[nodiscard]] std::uint64_t at(std::size_t i) const {
      return slots_[(head_ + i) % slots_.size()];
    }
    void pop_front() {
      head_ = (head_ + 1) % slots_.size();
      --count_;
    }
    void push_back(std::uint64_t seq) {
      if (count_ == slots_.size()) {
        std::vector<std::uint64_t> bigger(std::max<std::size_t>(8, slots_.size() * 2));
        for (std::size_t i = 0; i < count_; ++i) bigger[i] = at(i);
        slots_ = std::move(bigger);
        head_ = 0;
      }
      slots_[(head_ + count_++) % slots_.size()] = seq;
    }

   private:
    std::vector<std::uint64_t> slots_;
    std::size_t head_ = 0;
    std::size_t count_ = 0;
  };
  struct Client {
    SeqRing seqs;  // oldest first
    std::size_t bytes = 0;
    std::list<std::uint64_t>::iterator lru;
  };
  // Evicts the client's oldest entry; its node (and the capacity of its response) is kept in
  // spare_ for the next store to reuse.
  void evict_oldest_of(std::uint64_t client_id, Client& c);
  void evict_client(std::uint64_t client_id);

  ReplyCacheLimits limits_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
  std::unordered_map<Key, Entry, KeyHash>::node_type spare_;
  std::unordered_map<std::uint64_t, Client> clients_;
  std::list<std::uint64_t> lru_;  // least recently active client first
  std::size_t total_bytes_ = 0;
};

}  // namespace viaduct::cluster
