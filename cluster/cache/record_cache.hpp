// A data server's cache of records, bounded in bytes (tunable cache_max_bytes), least recently
// used first out. Each entry remembers whose type it is (the owner's index in the cluster map),
// so that what a server cached for an offline owner — temporarily — is dropped as a whole when
// that owner comes back, and what it cached of its own types is dropped when it learns it was
// marked offline meanwhile (others may have written them).
//
// A hit allocates nothing: the composite key is built in a buffer kept across calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace viaduct::cluster::cache {

struct CachedRecord {
  bool found = false;
  std::uint64_t version = 0;
  std::vector<std::byte> value;
  std::uint32_t owner = 0;  // index of the owning server in the map
};

class RecordCache {
 public:
  explicit RecordCache(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  // The entry, or nullptr; a hit becomes the most recently used.
  const CachedRecord* find(std::string_view type, std::span<const std::byte> key);
  // Inserts or replaces, then evicts least recently used entries beyond the bound. A record
  // larger than the whole bound is not kept.
  void store(std::string_view type, std::span<const std::byte> key, CachedRecord record);
  void erase(std::string_view type, std::span<const std::byte> key);
  // Drops every entry of `owner`'s types; returns how many.
  std::size_t drop_owner(std::uint32_t owner);
  void clear();
  [[nodiscard]] std::size_t bytes() const { return bytes_; }
  [[nodiscard]] std::size_t size() const { return entries_.size(); }
  [[nodiscard]] std::uint64_t evictions() const { return evictions_; }

 private:
  struct Entry {
    CachedRecord record;
    std::list<std::string>::iterator lru;
  };
  void compose(std::string_view type, std::span<const std::byte> key);
  static std::size_t cost(const std::string& key, const CachedRecord& r) {
    return key.size() + r.value.size() + 64;  // the bookkeeping's share, roughly
  }
  void remove(std::unordered_map<std::string, Entry>::iterator it);

  std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  std::uint64_t evictions_ = 0;
  std::string scratch_;
  std::list<std::string> lru_;  // front: most recent
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace viaduct::cluster::cache
