#include "cluster/reply_cache.hpp"

namespace viaduct::cluster {

const ReplyCache::Entry* ReplyCache::find(std::uint64_t client_id, std::uint64_t seq) const {
  auto it = entries_.find({client_id, seq});
  return it == entries_.end() ? nullptr : &it->second;
}

void ReplyCache::evict_oldest_of(std::uint64_t client_id, Client& c) {
  auto it = entries_.find({client_id, c.seqs.front()});
  c.seqs.pop_front();
  if (it == entries_.end()) return;
  c.bytes -= it->second.response.size();
  total_bytes_ -= it->second.response.size();
  entries_.erase(it);
}

void ReplyCache::evict_client(std::uint64_t client_id) {
  auto it = clients_.find(client_id);
  if (it == clients_.end()) return;
  while (!it->second.seqs.empty()) evict_oldest_of(client_id, it->second);
  lru_.erase(it->second.lru);
  clients_.erase(it);
}

void ReplyCache::store(std::uint64_t client_id, std::uint64_t seq, std::uint32_t app_status,
                       std::span<const std::byte> response) {
  if (response.size() > limits_.bytes_per_client || response.size() > limits_.total_bytes) {
    return;  // larger than any bound: a re-send of it is executed again (documented limit)
  }
  auto [cit, fresh] = clients_.try_emplace(client_id);
  Client& c = cit->second;
  if (fresh) {
    c.lru = lru_.insert(lru_.end(), client_id);
  } else {
    lru_.splice(lru_.end(), lru_, c.lru);  // most recently active
  }
  if (auto old = entries_.find({client_id, seq}); old != entries_.end()) {
    c.bytes -= old->second.response.size();
    total_bytes_ -= old->second.response.size();
    old->second.app_status = app_status;
    old->second.response.assign(response.begin(), response.end());
    c.bytes += response.size();
    total_bytes_ += response.size();
    return;
  }
  while (!c.seqs.empty() && (c.seqs.size() >= limits_.entries_per_client ||
                             c.bytes + response.size() > limits_.bytes_per_client)) {
    evict_oldest_of(client_id, c);
  }
  // Over the total bounds: the least recently active other clients go first.
  while ((clients_.size() > limits_.max_clients ||
          total_bytes_ + response.size() > limits_.total_bytes) &&
         lru_.front() != client_id) {
    evict_client(lru_.front());
  }
  c.seqs.push_back(seq);
  c.bytes += response.size();
  total_bytes_ += response.size();
  entries_.emplace(Key{client_id, seq}, Entry{app_status, {response.begin(), response.end()}});
}

}  // namespace viaduct::cluster
