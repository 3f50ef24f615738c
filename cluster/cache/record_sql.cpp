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
      .append(" NOT NULL, writer_client ")
      .append(d.integer_type)
      .append(" NOT NULL DEFAULT 0, writer_seq ")
      .append(d.integer_type)
      .append(" NOT NULL DEFAULT 0, PRIMARY KEY (type, key))")
      .append(d.table_options);
}

std::string create_fence_table_sql(const SqlDialect& d) {
  return "CREATE TABLE IF NOT EXISTS viaduct_fences (type TEXT PRIMARY KEY, epoch " +
         std::string(d.integer_type) + " NOT NULL)";
}

std::string raise_fence_sql(const SqlDialect& d) {
  return "INSERT INTO viaduct_fences (type, epoch) VALUES (" + parameter(d, 1) + ", " +
         parameter(d, 2) +
         ") ON CONFLICT (type) DO UPDATE SET epoch = excluded.epoch WHERE viaduct_fences.epoch < "
         "excluded.epoch";
}

std::string read_fence_sql(const SqlDialect& d) {
  return "SELECT epoch FROM viaduct_fences WHERE type = " + parameter(d, 1);
}

std::string get_sql(const SqlDialect& d) {
  return "SELECT value, version, deleted FROM viaduct_records" + key_match(d);
}

std::string version_sql(const SqlDialect& d) {
  return "SELECT version, writer_client, writer_seq FROM viaduct_records" + key_match(d);
}

std::string write_sql(const SqlDialect& d, bool tombstone, WriteCondition condition) {
  const std::string value = tombstone ? std::string(d.empty_blob_literal) : parameter(d, 3);
  const std::string_view deleted = tombstone ? d.true_literal : d.false_literal;
  // The writer's tag (client id, seq) follows the other parameters.
  const int next = tombstone ? 3 : 4;
  const int tag = condition == WriteCondition::kIfVersion ? next + 1 : next;
  const std::string client = parameter(d, tag);
  const std::string seq = parameter(d, tag + 1);
  // The writer's fence token, last: the write applies only while no newer owner of the type has
  // raised its fence above it. PostgreSQL's FOR SHARE holds the fence row until this statement
  // commits, so a raise waits for writes under the old token to finish and a reader that
  // follows the raise sees them; SQLite runs one write at a time anyway.
  const std::string fence_holds =
      " COALESCE((SELECT epoch FROM viaduct_fences WHERE type = " + parameter(d, 1) +
      std::string(d.share_lock) + "), 0) <= " + parameter(d, tag + 2);
  if (condition == WriteCondition::kIfVersion) {
    // An UPDATE, not an upsert: a record that is absent has version 0, which never equals an
    // expected version here (0 is kIfNeverWritten), so nothing may be inserted. A retry of a
    // write that applied finds the version moved on, and the tag tells it was its own.
    return "UPDATE viaduct_records SET value = " + value +
           ", version = version + 1, deleted = " + std::string(deleted) +
           ", writer_client = " + client + ", writer_seq = " + seq + key_match(d) +
           " AND version = " + parameter(d, next) + " AND" + fence_holds + " RETURNING version";
  }
  std::string sql =
      "INSERT INTO viaduct_records (type, key, value, version, deleted, writer_client, "
      "writer_seq) SELECT " +
      parameter(d, 1) + ", " + parameter(d, 2) + ", " + value + ", 1, " + std::string(deleted) +
      ", " + client + ", " + seq + " WHERE" + fence_holds + " ON CONFLICT (type, key) DO ";
  if (condition == WriteCondition::kIfNeverWritten) {
    sql += "NOTHING";
  } else {
    // The table name qualifies the stored row's version (PostgreSQL requires it; SQLite allows
    // it); a tombstone's version counts, so versions never go back.
    // A write whose tag is the row's last writer's was applied already (its answer was lost):
    // not again.
    sql += "UPDATE SET value = excluded.value, version = viaduct_records.version + 1, deleted = " +
           std::string(deleted) +
           ", writer_client = excluded.writer_client, writer_seq = excluded.writer_seq WHERE NOT "
           "(excluded.writer_client <> 0 AND viaduct_records.writer_client = "
           "excluded.writer_client AND viaduct_records.writer_seq = excluded.writer_seq)";
  }
  return sql + " RETURNING version";
}

}  // namespace viaduct::cluster::cache
