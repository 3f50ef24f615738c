#include "cluster/cache/record_store.hpp"

#include "cluster/cache/postgres_store.hpp"
#include "cluster/cache/sql_record_store.hpp"
#include "cluster/cache/sqlite_store.hpp"

namespace viaduct::cluster::cache {

Status check_record(std::string_view type, std::span<const std::byte> key,
                    std::span<const std::byte> value) {
  if (type.empty() || type.size() > kMaxTypeBytes) {
    return {Code::kInvalidArgument, "record type of " + std::to_string(type.size()) +
                                        " bytes (1.." + std::to_string(kMaxTypeBytes) + ")"};
  }
  if (type.find('\0') != std::string_view::npos) {
    return {Code::kInvalidArgument, "record type contains a NUL byte"};
  }
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return {Code::kInvalidArgument, "record key of " + std::to_string(key.size()) + " bytes (1.." +
                                        std::to_string(kMaxKeyBytes) + ")"};
  }
  if (value.size() > kMaxValueBytes) {
    return {Code::kInvalidArgument, "record value of " + std::to_string(value.size()) +
                                        " bytes (at most " + std::to_string(kMaxValueBytes) + ")"};
  }
  return Status::ok();
}

Result<std::uint64_t> SqlRecordStore::fence(std::string_view type, std::uint64_t epoch) {
  VIADUCT_RETURN_IF_ERROR(check_record(type, std::as_bytes(std::span("k", 1))));
  if (epoch >= static_cast<std::uint64_t>(kUnfenced)) {
    return Status{Code::kInvalidArgument, "fence epoch " + std::to_string(epoch) + " too large"};
  }
  const auto token = static_cast<std::int64_t>(epoch);
  auto now = raise_fence(type, token);
  if (!now) return now.status();
  // A newer owner's: our token stays (and writes nothing, being below it).
  if (now.value() > token) return static_cast<std::uint64_t>(now.value());
  if (auto it = fence_tokens_.find(type); it != fence_tokens_.end()) {
    it->second = token;
  } else {
    fence_tokens_.emplace(std::string(type), token);
  }
  return epoch;
}

Result<WriteResult> SqlRecordStore::checked_write(std::string_view type,
                                                  std::span<const std::byte> key,
                                                  const std::span<const std::byte>* value,
                                                  std::optional<std::uint64_t> expected_version,
                                                  WriteTag tag) {
  auto it = fence_tokens_.find(type);
  const std::int64_t token = it == fence_tokens_.end() ? kUnfenced : it->second;
  auto written = write(type, key, value, expected_version, tag, token);
  if (!written || written.value().applied || token == kUnfenced) return written;
  // Not applied: the version did not match, or the fence is above our token. Fences only rise:
  // one above our token now may have risen after the write ran (which then failed on the
  // version); either way this store may no longer write the type, and says so.
  auto fence_now = read_fence(type);
  if (!fence_now) return fence_now.status();
  if (fence_now.value() > token) return WriteResult{.applied = false, .version = 0, .fenced = true};
  return written;
}

Result<std::unique_ptr<RecordStore>> open_record_store(const std::string& uri) {
  constexpr std::string_view kSqlite = "sqlite:";
  std::string_view view = uri;
  if (view.starts_with(kSqlite)) {
    auto store = SqliteStore::open(view.substr(kSqlite.size()));
    if (!store) return store.status();
    return std::unique_ptr<RecordStore>(std::move(store).value());
  }
  if (view.starts_with("postgresql://") || view.starts_with("postgres://")) {
    auto store = PostgresStore::open(uri);
    if (!store) return store.status();
    return std::unique_ptr<RecordStore>(std::move(store).value());
  }
  const auto colon = view.find(':');
  const std::string scheme =
      colon == std::string_view::npos ? "(none)" : std::string(view.substr(0, colon));
  return Status{Code::kInvalidArgument,
                "record store URI scheme '" + scheme +
                    "' unknown: use sqlite:PATH, postgresql://... or postgres://..."};
}

}  // namespace viaduct::cluster::cache
