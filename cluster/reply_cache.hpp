// Bounded reply cache: a request re-sent after a failover, (client id, sequence) already seen, is
// answered from here instead of being executed twice.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

namespace viaduct::cluster {

class ReplyCache {
 public:
  struct Entry {
    std::uint64_t seq = 0;
    std::uint32_t app_status = 0;
    std::vector<std::byte> response;
  };
  ReplyCache(std::size_t per_client, std::size_t max_clients)
      : per_client_(per_client), max_clients_(max_clients) {}
  [[nodiscard]] const Entry* find(std::uint64_t client_id, std::uint64_t seq) const;
  void store(std::uint64_t client_id, std::uint64_t seq, std::uint32_t app_status,
             std::span<const std::byte> response);
  [[nodiscard]] std::size_t clients() const { return by_client_.size(); }

 private:
  std::size_t per_client_;
  std::size_t max_clients_;
  std::unordered_map<std::uint64_t, std::deque<Entry>> by_client_;
  std::deque<std::uint64_t> client_order_;  // oldest first, for eviction
};

}  // namespace viaduct::cluster
