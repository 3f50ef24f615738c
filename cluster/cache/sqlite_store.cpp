#include "cluster/cache/sqlite_store.hpp"

#include <chrono>
#include <cstring>
#include <thread>

#include "cluster/cache/record_sql.hpp"

namespace viaduct::cluster::cache {

namespace {

// Many processes share one file and a writer holds the lock only for one statement: 10 s of
// waiting means something is stuck, not busy.
constexpr int kBusyTimeoutMs = 10000;

// A statement in use is reset (and its bindings dropped: they point into the caller's buffers)
// on every way out.
class StatementUse {
 public:
  explicit StatementUse(sqlite3_stmt* statement) : statement_(statement) {}
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;
  ~StatementUse() {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }
  sqlite3_stmt* get() const { return statement_; }

 private:
  sqlite3_stmt* statement_;
};

int bind_bytes(sqlite3_stmt* statement, int index, std::span<const std::byte> bytes) {
  // An empty span may have a null data pointer, which SQLite would bind as NULL, and the column
  // is NOT NULL.
  if (bytes.empty()) return sqlite3_bind_zeroblob(statement, index, 0);
  return sqlite3_bind_blob(statement, index, bytes.data(), static_cast<int>(bytes.size()),
                           SQLITE_STATIC);
}

// (type, key): the first two parameters of every statement.
int bind_record_key(sqlite3_stmt* statement, std::string_view type,
                    std::span<const std::byte> key) {
  int rc =
      sqlite3_bind_text(statement, 1, type.data(), static_cast<int>(type.size()), SQLITE_STATIC);
  return rc == SQLITE_OK ? bind_bytes(statement, 2, key) : rc;
}

Code code_of(int rc) {
  switch (rc & 0xff) {  // the primary code of an extended one
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Code::kTimeout;
    case SQLITE_NOMEM:
    case SQLITE_FULL:
      return Code::kResource;
    default:
      return Code::kInternal;
  }
}

}  // namespace

SqliteStore::SqliteStore(Database db) : db_(std::move(db)) {}
SqliteStore::~SqliteStore() = default;

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(std::string_view path_and_options) {
  std::string_view path = path_and_options;
  std::string_view synchronous = "NORMAL";
  if (auto question = path.find('?'); question != std::string_view::npos) {
    const std::string_view options = path.substr(question + 1);
    path = path.substr(0, question);
    if (options == "sync=full") {
      synchronous = "FULL";
    } else if (options != "sync=normal") {
      return Status{Code::kInvalidArgument, "sqlite: unknown option '" + std::string(options) +
                                                "' (sync=normal or sync=full)"};
    }
  }
  if (path.empty()) return Status{Code::kInvalidArgument, "sqlite: no file path (sqlite:PATH)"};
  const std::string path_string(path);
  sqlite3* raw = nullptr;
  // NOMUTEX: a store belongs to one thread at a time; SQLite's own locking is not needed.
  const int rc =
      sqlite3_open_v2(path_string.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Database db(raw);  // closed on every way out, even when the open failed
  if (rc != SQLITE_OK) {
    return Status{code_of(rc), "sqlite: open " + path_string + ": " +
                                   (db ? sqlite3_errmsg(db.get()) : sqlite3_errstr(rc))};
  }
  sqlite3_extended_result_codes(db.get(), 1);
  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(db)));
  // Before the pragmas: switching to WAL takes a lock another process may hold.
  sqlite3_busy_handler(store->db_.get(), &SqliteStore::wait_while_busy, store.get());
  const std::string setup =
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = " + std::string(synchronous) + "; " +
      create_table_sql(kSqliteDialect) + "; " + create_fence_table_sql(kSqliteDialect);
  // Several processes opening a fresh file at once race to switch it to WAL, and SQLite answers
  // that race with SQLITE_BUSY at once, without its busy handler: try again for the same 10 s.
  for (int waited_ms = 0;; waited_ms += 10) {
    if (sqlite3_exec(store->db_.get(), setup.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK) {
      break;
    }
    int primary = sqlite3_extended_errcode(store->db_.get()) & 0xff;
    if ((primary != SQLITE_BUSY && primary != SQLITE_LOCKED) || waited_ms >= kBusyTimeoutMs) {
      return store->error(("set up " + path_string).c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  VIADUCT_RETURN_IF_ERROR(store->prepare_statements());
  return store;
}

Status SqliteStore::prepare_statements() {
  auto prepare = [this](const std::string& sql, Statement& out) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    out.reset(raw);
    return rc == SQLITE_OK ? Status::ok() : error("prepare");
  };
  VIADUCT_RETURN_IF_ERROR(prepare(get_sql(kSqliteDialect), get_));
  VIADUCT_RETURN_IF_ERROR(prepare(version_sql(kSqliteDialect), version_));
  VIADUCT_RETURN_IF_ERROR(prepare(raise_fence_sql(kSqliteDialect), raise_fence_));
  VIADUCT_RETURN_IF_ERROR(prepare(read_fence_sql(kSqliteDialect), read_fence_));
  for (bool tombstone : {false, true}) {
    Writes& writes = tombstone ? removes_ : puts_;
    VIADUCT_RETURN_IF_ERROR(
        prepare(write_sql(kSqliteDialect, tombstone, WriteCondition::kAlways), writes.always));
    VIADUCT_RETURN_IF_ERROR(prepare(
        write_sql(kSqliteDialect, tombstone, WriteCondition::kIfVersion), writes.if_version));
    VIADUCT_RETURN_IF_ERROR(
        prepare(write_sql(kSqliteDialect, tombstone, WriteCondition::kIfNeverWritten),
                writes.if_never_written));
  }
  return Status::ok();
}

// SQLite's own handler (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25, ... ms between
// tries. Data servers share one file and each holds the write lock for one statement, tens of
// microseconds: two writes that meet cost the second one milliseconds with it (measured: the
// cache cluster's client saw 5-10 ms operations with nothing failing). Here the first 5 ms are
// tried every 50 us, then every millisecond, up to the same 10 s in all.
int SqliteStore::wait_while_busy(void* self, int tries) {
  auto* store = static_cast<SqliteStore*>(self);
  const auto now = std::chrono::steady_clock::now();
  if (tries == 0) store->busy_since_ = now;
  if (now - store->busy_since_ >= std::chrono::milliseconds(kBusyTimeoutMs)) return 0;  // give up
  std::this_thread::sleep_for(tries < 100 ? std::chrono::microseconds(50)
                                          : std::chrono::microseconds(1000));
  return 1;
}

Status SqliteStore::error(const char* doing) const {
  return {code_of(sqlite3_extended_errcode(db_.get())),
          std::string("sqlite: ") + doing + ": " + sqlite3_errmsg(db_.get())};
}

Status SqliteStore::read(std::string_view type, std::span<const std::byte> key, StoredRecord& out) {
  StatementUse use(get_.get());
  if (bind_record_key(use.get(), type, key) != SQLITE_OK) return error("bind");
  count_query();
  const int rc = sqlite3_step(use.get());
  out.value.clear();
  if (rc == SQLITE_DONE) {
    out.found = false;
    out.version = 0;
    return Status::ok();
  }
  if (rc != SQLITE_ROW) return error("get");
  const auto* data = static_cast<const std::byte*>(sqlite3_column_blob(use.get(), 0));
  const auto size = static_cast<std::size_t>(sqlite3_column_bytes(use.get(), 0));
  out.version = static_cast<std::uint64_t>(sqlite3_column_int64(use.get(), 1));
  out.found = sqlite3_column_int(use.get(), 2) == 0;
  if (size > 0) out.value.assign(data, data + size);
  return Status::ok();
}

Result<WriteResult> SqliteStore::write(std::string_view type, std::span<const std::byte> key,
                                       const std::span<const std::byte>* value,
                                       std::optional<std::uint64_t> expected_version, WriteTag tag,
                                       std::int64_t fence_token) {
  Writes& writes = value ? puts_ : removes_;
  sqlite3_stmt* statement = writes.always.get();
  if (expected_version) {
    statement = *expected_version == 0 ? writes.if_never_written.get() : writes.if_version.get();
  }
  {
    StatementUse use(statement);
    int rc = bind_record_key(statement, type, key);
    int next_parameter = value ? 4 : 3;
    if (rc == SQLITE_OK && value) rc = bind_bytes(statement, 3, *value);
    if (rc == SQLITE_OK && expected_version && *expected_version != 0) {
      rc = sqlite3_bind_int64(statement, next_parameter++,
                              static_cast<sqlite3_int64>(*expected_version));
    }
    // The writer's tag: the bits of the u64s.
    if (rc == SQLITE_OK) {
      rc = sqlite3_bind_int64(statement, next_parameter, static_cast<sqlite3_int64>(tag.client_id));
    }
    if (rc == SQLITE_OK) {
      rc = sqlite3_bind_int64(statement, next_parameter + 1, static_cast<sqlite3_int64>(tag.seq));
    }
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(statement, next_parameter + 2, fence_token);
    if (rc != SQLITE_OK) return error("bind");
    count_query();
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
      const auto version = static_cast<std::uint64_t>(sqlite3_column_int64(statement, 0));
      // Run to the end: the statement commits there, and a failure to commit must be seen.
      if (sqlite3_step(statement) != SQLITE_DONE) return error(value ? "put" : "remove");
      return WriteResult{.applied = true, .version = version};
    }
    if (rc != SQLITE_DONE) return error(value ? "put" : "remove");
  }
  // The condition did not hold, or the row's last writer is this write (a retry): the caller
  // needs the version, and whose.
  StatementUse use(version_.get());
  if (bind_record_key(use.get(), type, key) != SQLITE_OK) return error("bind");
  count_query();
  const int rc = sqlite3_step(use.get());
  if (rc == SQLITE_DONE) return WriteResult{.applied = false, .version = 0};
  if (rc != SQLITE_ROW) return error("read version");
  const bool ours =
      !tag.empty() &&
      static_cast<std::uint64_t>(sqlite3_column_int64(use.get(), 1)) == tag.client_id &&
      static_cast<std::uint64_t>(sqlite3_column_int64(use.get(), 2)) == tag.seq;
  return WriteResult{.applied = ours,
                     .version = static_cast<std::uint64_t>(sqlite3_column_int64(use.get(), 0))};
}

}  // namespace viaduct::cluster::cache

namespace viaduct::cluster::cache {

Result<std::int64_t> SqliteStore::raise_fence(std::string_view type, std::int64_t epoch) {
  {
    StatementUse use(raise_fence_.get());
    int rc =
        sqlite3_bind_text(use.get(), 1, type.data(), static_cast<int>(type.size()), SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(use.get(), 2, epoch);
    if (rc != SQLITE_OK) return error("bind");
    count_query();
    if (sqlite3_step(use.get()) != SQLITE_DONE) return error("raise fence");
  }
  return read_fence(type);
}

Result<std::int64_t> SqliteStore::read_fence(std::string_view type) {
  StatementUse use(read_fence_.get());
  if (sqlite3_bind_text(use.get(), 1, type.data(), static_cast<int>(type.size()), SQLITE_STATIC) !=
      SQLITE_OK) {
    return error("bind");
  }
  count_query();
  const int rc = sqlite3_step(use.get());
  if (rc == SQLITE_DONE) return std::int64_t{0};
  if (rc != SQLITE_ROW) return error("read fence");
  return static_cast<std::int64_t>(sqlite3_column_int64(use.get(), 0));
}

}  // namespace viaduct::cluster::cache
