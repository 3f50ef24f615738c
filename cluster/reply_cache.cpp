#include "cluster/reply_cache.hpp"

#include <algorithm>

namespace viaduct::cluster {

const ReplyCache::Entry* ReplyCache::find(std::uint64_t client_id, std::uint64_t seq) const {
  auto it = by_client_.find(client_id);
  if (it == by_client_.end()) return nullptr;
  for (const auto& e : it->second) {
    if (e.seq == seq) return &e;
  }
  return nullptr;
}

void ReplyCache::store(std::uint64_t client_id, std::uint64_t seq, std::uint32_t app_status,
                       std::span<const std::byte> response) {
  auto [it, fresh] = by_client_.try_emplace(client_id);
  if (fresh) {
    client_order_.push_back(client_id);
    if (by_client_.size() > max_clients_) {
      by_client_.erase(client_order_.front());
      client_order_.pop_front();
    }
  }
  auto& entries = by_client_[client_id];
  if (entries.size() >= per_client_) {
    // Reuse the oldest entry's buffer: no allocation once the cache is warm.
    Entry old = std::move(entries.front());
    entries.pop_front();
    old.seq = seq;
    old.app_status = app_status;
    old.response.assign(response.begin(), response.end());
    entries.push_back(std::move(old));
    return;
  }
  entries.push_back({seq, app_status, {response.begin(), response.end()}});
}

}  // namespace viaduct::cluster
