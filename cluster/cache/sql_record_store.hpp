// What the SQLite and PostgreSQL stores share: every call's sizes checked before any SQL (so that
// a caller's mistake is kInvalidArgument naming the field, the same from either database), and
// put/remove as one write, of a value or of a tombstone; the count of statements sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "cluster/cache/record_store.hpp"

namespace viaduct::cluster::cache {

// type: 1..kMaxTypeBytes bytes and no NUL (PostgreSQL's TEXT cannot hold one); key:
// 1..kMaxKeyBytes bytes; value: at most kMaxValueBytes.
Status check_record(std::string_view type, std::span<const std::byte> key,
                    std::span<const std::byte> value = {});

class SqlRecordStore : public RecordStore {
 public:
  Status get(std::string_view type, std::span<const std::byte> key, StoredRecord& out) final {
    VIADUCT_RETURN_IF_ERROR(check_record(type, key));
    return read(type, key, out);
  }
  Result<WriteResult> put(std::string_view type, std::span<const std::byte> key,
                          std::span<const std::byte> value,
                          std::optional<std::uint64_t> expected_version, WriteTag tag) final {
    VIADUCT_RETURN_IF_ERROR(check_record(type, key, value));
    return checked_write(type, key, &value, expected_version, tag);
  }
  Result<WriteResult> remove(std::string_view type, std::span<const std::byte> key,
                             std::optional<std::uint64_t> expected_version, WriteTag tag) final {
    VIADUCT_RETURN_IF_ERROR(check_record(type, key));
    return checked_write(type, key, nullptr, expected_version, tag);
  }
  Result<std::uint64_t> fence(std::string_view type, std::uint64_t epoch) final;
  [[nodiscard]] std::uint64_t queries() const final { return queries_; }

 protected:
  // Arguments checked already.
  virtual Status read(std::string_view type, std::span<const std::byte> key, StoredRecord& out) = 0;
  // `value` null: a tombstone. One statement, plus a read of the version when nothing was
  // written (the expected version did not match, a retry, or the fence).
  virtual Result<WriteResult> write(std::string_view type, std::span<const std::byte> key,
                                    const std::span<const std::byte>* value,
                                    std::optional<std::uint64_t> expected_version, WriteTag tag,
                                    std::int64_t fence_token) = 0;
  // Raises the fence (never lowers it) and reads it back: the fence now, or an error.
  virtual Result<std::int64_t> raise_fence(std::string_view type, std::int64_t epoch) = 0;
  virtual Result<std::int64_t> read_fence(std::string_view type) = 0;
  // Before each statement a read or write sends (setting up a connection is not counted).
  void count_query() { ++queries_; }

 private:
  static constexpr std::int64_t kUnfenced = std::numeric_limits<std::int64_t>::max();
  Result<WriteResult> checked_write(std::string_view type, std::span<const std::byte> key,
                                    const std::span<const std::byte>* value,
                                    std::optional<std::uint64_t> expected_version, WriteTag tag);
  std::uint64_t queries_ = 0;
  std::map<std::string, std::int64_t, std::less<>> fence_tokens_;  // type -> this store's token
};

}  // namespace viaduct::cluster::cache
