#include "cluster/reply_cache.hpp"

#include <cstring>

#include "transport/frame.hpp"

namespace viaduct::cluster {

const ReplyCache::Entry* ReplyCache::find(std::uint64_t client_id, std::uint64_t seq) const {
  auto it = entries_.find({client_id, seq});
  return it == entries_.end() ? nullptr : &it->second;
}

void ReplyCache::evict_oldest_of(std::uint64_t client_id, Client& c) {
  auto node = entries_.extract({client_id, c.seqs.front()});
  c.seqs.pop_front();
  if (node.empty()) return;
  c.bytes -= node.mapped().response.size();
  total_bytes_ -= node.mapped().response.size();
  spare_ = std::move(node);
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
  if (!spare_.empty()) {
    // Steady state (a client at its bound): the evicted entry's node and buffer are reused, so a
    // store allocates nothing.
    spare_.key() = Key{client_id, seq};
    spare_.mapped().app_status = app_status;
    spare_.mapped().response.assign(response.begin(), response.end());
    entries_.insert(std::move(spare_));
    spare_ = {};
    return;
  }
  entries_.emplace(Key{client_id, seq}, Entry{app_status, {response.begin(), response.end()}});
}

namespace {
constexpr std::size_t kCacheHeaderBytes = 12;
constexpr std::size_t kEntryHeaderBytes = 24;
constexpr std::uint8_t kCacheVersion = 1;
}  // namespace

void ReplyCache::clear() {
  entries_.clear();
  spare_ = {};
  clients_.clear();
  lru_.clear();
  total_bytes_ = 0;
}

void ReplyCache::serialize(std::vector<std::byte>& out, std::size_t max_bytes) const {
  // The most recently active clients that fit, then written least recent first (restore keeps
  // the order of activity).
  std::size_t bytes = kCacheHeaderBytes;
  auto first = lru_.end();
  std::uint32_t count = 0;
  while (first != lru_.begin()) {
    auto prev = std::prev(first);
    const Client& c = clients_.at(*prev);
    std::size_t need = c.bytes + c.seqs.size() * kEntryHeaderBytes;
    if (bytes + need > max_bytes) break;
    bytes += need;
    count += static_cast<std::uint32_t>(c.seqs.size());
    first = prev;
  }
  out.resize(kCacheHeaderBytes);
  std::memcpy(out.data(), "VDRC", 4);
  out[4] = std::byte{kCacheVersion};
  out[5] = out[6] = out[7] = std::byte{0};
  transport::store_le<std::uint32_t>(out.data() + 8, count);
  out.reserve(bytes);
  for (auto it = first; it != lru_.end(); ++it) {
    const Client& c = clients_.at(*it);
    for (std::size_t i = 0; i < c.seqs.size(); ++i) {
      std::uint64_t seq = c.seqs.at(i);
      auto e = entries_.find({*it, seq});
      if (e == entries_.end()) continue;  // never: kept in step by store and evict
      std::size_t at = out.size();
      out.resize(at + kEntryHeaderBytes + e->second.response.size());
      transport::store_le<std::uint64_t>(out.data() + at, *it);
      transport::store_le<std::uint64_t>(out.data() + at + 8, seq);
      transport::store_le<std::uint32_t>(out.data() + at + 16, e->second.app_status);
      transport::store_le<std::uint32_t>(out.data() + at + 20,
                                         static_cast<std::uint32_t>(e->second.response.size()));
      if (!e->second.response.empty()) {
        std::memcpy(out.data() + at + kEntryHeaderBytes, e->second.response.data(),
                    e->second.response.size());
      }
    }
  }
}

bool ReplyCache::restore(std::span<const std::byte> bytes) {
  clear();
  if (bytes.empty()) return true;  // an older active's snapshot, or nothing cached
  if (bytes.size() < kCacheHeaderBytes || std::memcmp(bytes.data(), "VDRC", 4) != 0 ||
      bytes[4] != std::byte{kCacheVersion}) {
    return false;
  }
  std::uint32_t count = transport::load_le<std::uint32_t>(bytes.data() + 8);
  std::size_t at = kCacheHeaderBytes;
  for (std::uint32_t i = 0; i < count; ++i) {
    if (bytes.size() - at < kEntryHeaderBytes) {
      clear();
      return false;
    }
    auto client_id = transport::load_le<std::uint64_t>(bytes.data() + at);
    auto seq = transport::load_le<std::uint64_t>(bytes.data() + at + 8);
    auto status = transport::load_le<std::uint32_t>(bytes.data() + at + 16);
    std::size_t length = transport::load_le<std::uint32_t>(bytes.data() + at + 20);
    at += kEntryHeaderBytes;
    if (bytes.size() - at < length) {
      clear();
      return false;
    }
    store(client_id, seq, status, bytes.subspan(at, length));
    at += length;
  }
  if (at != bytes.size()) {
    clear();
    return false;
  }
  return true;
}

}  // namespace viaduct::cluster
