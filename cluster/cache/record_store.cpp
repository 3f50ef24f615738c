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
