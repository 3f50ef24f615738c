// The record store in one SQLite file: the embedded default, for the data servers of one machine.
// Many processes may open the same file: WAL lets readers run beside the one writer, and a writer
// that finds the file locked waits its turn (up to 10 s, retrying every 50 us at first) instead
// of failing.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <memory>

#include "cluster/cache/sql_record_store.hpp"

namespace viaduct::cluster::cache {

class SqliteStore final : public SqlRecordStore {
 public:
  // "PATH" or "PATH?sync=full" (sync=normal is the default): the part after "sqlite:".
  static Result<std::unique_ptr<SqliteStore>> open(std::string_view path_and_options);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  [[nodiscard]] std::string_view kind() const override { return "sqlite"; }

 protected:
  Status read(std::string_view type, std::span<const std::byte> key, StoredRecord& out) override;
  Result<WriteResult> write(std::string_view type, std::span<const std::byte> key,
                            const std::span<const std::byte>* value,
                            std::optional<std::uint64_t> expected_version, WriteTag tag,
                            std::int64_t fence_token) override;
  Result<std::int64_t> raise_fence(std::string_view type, std::int64_t epoch) override;
  Result<std::int64_t> read_fence(std::string_view type) override;

 private:
  struct DatabaseCloser {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  struct StatementFinalizer {
    void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
  };
  using Database = std::unique_ptr<sqlite3, DatabaseCloser>;
  using Statement = std::unique_ptr<sqlite3_stmt, StatementFinalizer>;

  // One prepared statement per (operation, condition): put or remove, each always / if version /
  // if never written (WriteCondition's order).
  struct Writes {
    Statement always;
    Statement if_version;
    Statement if_never_written;
  };

  explicit SqliteStore(Database db);
  Status prepare_statements();
  static int wait_while_busy(void* self, int tries);  // sqlite3_busy_handler's
  Status error(const char* doing) const;

  // Declared first: destroyed last, after the statements prepared on it.
  Database db_;
  std::chrono::steady_clock::time_point busy_since_;  // when the current wait for a lock began
  Statement get_;
  Statement version_;
  Statement raise_fence_;
  Statement read_fence_;
  Writes puts_;
  Writes removes_;
};

}  // namespace viaduct::cluster::cache
