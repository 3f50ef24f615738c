#include "cluster/cache/record_cache.hpp"

namespace viaduct::cluster::cache {

void RecordCache::compose(std::string_view type, std::span<const std::byte> key) {
  scratch_.clear();
  scratch_.push_back(static_cast<char>(type.size()));
  scratch_.append(type);
  scratch_.append(reinterpret_cast<const char*>(key.data()), key.size());
}

const CachedRecord* RecordCache::find(std::string_view type, std::span<const std::byte> key) {
  compose(type, key);
  auto it = entries_.find(scratch_);
  if (it == entries_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return &it->second.record;
}

void RecordCache::remove(std::unordered_map<std::string, Entry>::iterator it) {
  bytes_ -= cost(it->first, it->second.record);
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

void RecordCache::store(std::string_view type, std::span<const std::byte> key,
                        CachedRecord record) {
  compose(type, key);
  if (auto it = entries_.find(scratch_); it != entries_.end()) remove(it);
  if (cost(scratch_, record) > max_bytes_) return;
  lru_.push_front(scratch_);
  bytes_ += cost(scratch_, record);
  entries_.emplace(scratch_, Entry{std::move(record), lru_.begin()});
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    remove(entries_.find(lru_.back()));
    ++evictions_;
  }
}

void RecordCache::erase(std::string_view type, std::span<const std::byte> key) {
  compose(type, key);
  if (auto it = entries_.find(scratch_); it != entries_.end()) remove(it);
}

std::size_t RecordCache::drop_owner(std::uint32_t owner) {
  std::size_t dropped = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    if (it->second.record.owner == owner) {
      remove(it);
      ++dropped;
    }
    it = next;
  }
  return dropped;
}

void RecordCache::clear() {
  entries_.clear();
  lru_.clear();
  bytes_ = 0;
}

}  // namespace viaduct::cluster::cache
