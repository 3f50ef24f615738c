// The record store's SQL, written once for both databases. SQLite and PostgreSQL agree on the
// statements (upsert with ON CONFLICT, UPDATE ... RETURNING) and differ only in spelling:
// parameter markers, column types, boolean and empty-blob literals.
//
// Every write is one statement, so that it is atomic without an explicit transaction and several
// stores (threads, processes, machines) may write the same record: the database serialises them.
#pragma once

#include <string>
#include <string_view>

namespace viaduct::cluster::cache {

struct SqlDialect {
  char parameter_marker;  // '?' (SQLite: ?1) or '$' (PostgreSQL: $1)
  std::string_view blob_type;
  std::string_view integer_type;
  std::string_view boolean_type;
  std::string_view false_literal;
  std::string_view true_literal;
  std::string_view empty_blob_literal;
  std::string_view table_options;  // after the closing parenthesis of CREATE TABLE
  std::string_view share_lock;     // what makes a read of the fence hold it until commit
};

inline constexpr SqlDialect kSqliteDialect{'?', "BLOB", "INTEGER",        "INTEGER", "0",
                                           "1", "x''",  " WITHOUT ROWID", ""};
inline constexpr SqlDialect kPostgresDialect{'$',    "BYTEA",     "BIGINT", "BOOLEAN",   "false",
                                             "true", "''::bytea", "",       " FOR SHARE"};

// When a write applies: always, only over the stored version given as a parameter, or only when
// the record was never written (expected version 0).
enum class WriteCondition { kAlways, kIfVersion, kIfNeverWritten };

// Parameters, in order: every statement takes (type, key); a put then its value; a conditional
// write then the expected version; every write then the writer's tag (client id, seq: int64,
// the bits of the u64) and its fence token (int64). Reads return (value, version, deleted) or
// (version, writer client, writer seq); writes return the new version, and no row when the
// condition did not hold or the row's last writer has the same nonzero tag (a retry of a write that
// applied).
std::string create_table_sql(const SqlDialect& dialect);
std::string create_fence_table_sql(const SqlDialect& dialect);
std::string get_sql(const SqlDialect& dialect);
std::string version_sql(const SqlDialect& dialect);
std::string write_sql(const SqlDialect& dialect, bool tombstone, WriteCondition condition);
// Fences (RecordStore::fence): raise takes (type, epoch) and never lowers one; read takes (type)
// and returns (epoch), or no row when the type was never fenced.
std::string raise_fence_sql(const SqlDialect& dialect);
std::string read_fence_sql(const SqlDialect& dialect);

}  // namespace viaduct::cluster::cache
