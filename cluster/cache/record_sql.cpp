#include "cluster/cache/record_sql.hpp"

namespace viaduct::cluster::cache {

namespace {

std::string parameter(const SqlDialect& d, int index) {
  return std::string(1, d.parameter_marker) + std::to_string(index);
}

std::string key_match(const SqlDialect& d) {
  return " WHERE type = " + parameter(d, 1) + " AND key = " + parameter(d, 2);
}

}  // namespace

std::string create_table_sql(const SqlDialect& d) {
  return std::string("CREATE TABLE IF NOT EXISTS viaduct_records (type TEXT NOT NULL, key ")
      .append(d.blob_type)
      .append(" NOT NULL, value ")
      .append(d.blob_type)
      .append(" NOT NULL, version ")
      .append(d.integer_type)
      .append(" NOT NULL, deleted ")
      .append(d.boolean_type)
      .append(" NOT NULL, PRIMARY KEY (type, key))")
      .append(d.table_options);
}

std::string get_sql(const SqlDialect& d) {
  return "SELECT value, version, deleted FROM viaduct_records" + key_match(d);
}

std::string version_sql(const SqlDialect& d) {
  return "SELECT version FROM viaduct_records" + key_match(d);
}

std::string write_sql(const SqlDialect& d, bool tombstone, WriteCondition condition) {
  const std::string value = tombstone ? std::string(d.empty_blob_literal) : parameter(d, 3);
  const std::string_view deleted = tombstone ? d.true_literal : d.false_literal;
  if (condition == WriteCondition::kIfVersion) {
    // An UPDATE, not an upsert: a record that is absent has version 0, which never equals an
    // expected version here (0 is kIfNeverWritten), so nothing may be inserted.
    const int expected = tombstone ? 3 : 4;
    return "UPDATE viaduct_records SET value = " + value +
           ", version = version + 1, deleted = " + std::string(deleted) + key_match(d) +
           " AND version = " + parameter(d, expected) + " RETURNING version";
  }
  std::string sql = "INSERT INTO viaduct_records (type, key, value, version, deleted) VALUES (" +
                    parameter(d, 1) + ", " + parameter(d, 2) + ", " + value + ", 1, " +
                    std::string(deleted) + ") ON CONFLICT (type, key) DO ";
  if (condition == WriteCondition::kIfNeverWritten) {
    sql += "NOTHING";
  } else {
    // The table name qualifies the stored row's version (PostgreSQL requires it; SQLite allows
    // it); a tombstone's version counts, so versions never go back.
    sql += "UPDATE SET value = excluded.value, version = viaduct_records.version + 1, deleted = " +
           std::string(deleted);
  }
  return sql + " RETURNING version";
}

}  // namespace viaduct::cluster::cache
