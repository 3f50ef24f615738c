#include "cluster/cache/postgres_store.hpp"

#include <algorithm>
#include <cstdlib>

#include "cluster/cache/record_sql.hpp"

namespace viaduct::cluster::cache {

namespace {

// Type OIDs of the parameters (pg_type.h): with them the server reads binary parameters without
// guessing.
constexpr Oid kTextOid = 25;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;

constexpr std::string_view kDefaultConnectTimeout = "connect_timeout=5";

// SQLSTATEs after which CREATE TABLE IF NOT EXISTS still leaves the table there: another store
// created it at the same moment (the catalog's unique index caught the race).
constexpr std::string_view kUniqueViolation = "23505";
constexpr std::string_view kDuplicateTable = "42P07";
// A put if version: (type, key, value, expected, client, seq, fence token).
constexpr std::size_t kMaxParameters = 7;

const char* statement_name(int statement) {
  static constexpr std::array<const char*, 10> kNames = {
      "viaduct_get",         "viaduct_version",   "viaduct_put",       "viaduct_put_if",
      "viaduct_put_new",     "viaduct_remove",    "viaduct_remove_if", "viaduct_remove_new",
      "viaduct_raise_fence", "viaduct_read_fence"};
  return kNames.at(static_cast<std::size_t>(statement));
}

// libpq's messages end with a newline (and sometimes span lines): one line for a Status.
std::string one_line(const char* message) {
  std::string text = message ? message : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

std::array<char, 8> big_endian(std::uint64_t value) {
  std::array<char, 8> out{};
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  return out;
}

std::uint64_t from_big_endian(const char* data) {
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | static_cast<unsigned char>(data[i]);
  return value;
}

std::uint64_t version_at(const PGresult* result, int column) {
  if (PQgetlength(result, 0, column) != 8) return 0;  // the column is BIGINT: cannot happen
  return from_big_endian(PQgetvalue(result, 0, column));
}

// Where an empty value points: libpq sends a null pointer as SQL NULL, and the column is NOT NULL.
constexpr char kNoBytes[] = "";

void ignore_notice(void* /*arg*/, const char* /*message*/) {
  // "relation already exists, skipping" on every open: not worth a line on stderr.
}

}  // namespace

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(const std::string& uri) {
  std::string conninfo = uri;
  if (conninfo.find("connect_timeout") == std::string::npos) {
    conninfo += conninfo.find('?') == std::string::npos ? '?' : '&';
    conninfo += kDefaultConnectTimeout;
  }
  Connection connection(PQconnectdb(conninfo.c_str()));
  if (!connection) return Status{Code::kResource, "postgresql: connect: out of memory"};
  if (PQstatus(connection.get()) != CONNECTION_OK) {
    // Not the URI itself in the message: it may hold a password.
    return Status{Code::kRejected,
                  "postgresql: connect: " + one_line(PQerrorMessage(connection.get()))};
  }
  PQsetNoticeProcessor(connection.get(), ignore_notice, nullptr);
  std::unique_ptr<PostgresStore> store(new PostgresStore(std::move(connection)));
  VIADUCT_RETURN_IF_ERROR(store->set_up());
  return store;
}

Status PostgresStore::connection_error(const std::string& doing) const {
  return {Code::kConnLost,
          "postgresql: " + doing + ": " + one_line(PQerrorMessage(connection_.get())),
          ConnLostCause::kDisconnected};
}

Status PostgresStore::set_up() {
  PGconn* c = connection_.get();
  // The servers of a cluster start together on a fresh database: their CREATE TABLEs are taken
  // one at a time (a session advisory lock, released below or with the session), rather than
  // relying on which error a race between concurrent DDL happens to raise.
  QueryResult locked(PQexec(c, "SELECT pg_advisory_lock(7628127)"));
  if (PQresultStatus(locked.get()) != PGRES_TUPLES_OK) {
    if (PQstatus(c) == CONNECTION_BAD) return connection_error("set-up lock");
    return {Code::kInternal,
            "postgresql: set-up lock: " + one_line(PQresultErrorMessage(locked.get()))};
  }
  Status created = create_tables();
  QueryResult unlocked(PQexec(c, "SELECT pg_advisory_unlock(7628127)"));
  if (!created.is_ok()) return created;
  return prepare_statements();
}

Status PostgresStore::create_tables() {
  PGconn* c = connection_.get();
  for (const std::string& create :
       {create_table_sql(kPostgresDialect), create_fence_table_sql(kPostgresDialect)}) {
    QueryResult created(PQexec(c, create.c_str()));
    if (PQresultStatus(created.get()) != PGRES_COMMAND_OK) {
      const char* state = PQresultErrorField(created.get(), PG_DIAG_SQLSTATE);
      const std::string_view sqlstate = state ? state : "";
      if (PQstatus(c) == CONNECTION_BAD) return connection_error("create table");
      if (sqlstate != kUniqueViolation && sqlstate != kDuplicateTable) {
        return {Code::kInternal,
                "postgresql: create table: " + one_line(PQresultErrorMessage(created.get()))};
      }
    }
  }
  return Status::ok();
}

Status PostgresStore::prepare_statements() {
  PGconn* c = connection_.get();
  // get, version, remove: (type, key[, expected], client, seq, fence token); put: (type, key,
  // value, ...); the fences: (type[, epoch]).
  const Oid key_types[] = {kTextOid, kByteaOid, kInt8Oid, kInt8Oid, kInt8Oid, kInt8Oid};
  const Oid put_types[] = {kTextOid, kByteaOid, kByteaOid, kInt8Oid, kInt8Oid, kInt8Oid, kInt8Oid};
  const Oid fence_types[] = {kTextOid, kInt8Oid};
  for (int statement = 0; statement < kStatementCount; ++statement) {
    std::string sql;
    const bool is_put = statement >= kPut && statement <= kPutIfNeverWritten;
    const Oid* types = is_put ? put_types : key_types;
    if (statement == kGet) {
      sql = get_sql(kPostgresDialect);
    } else if (statement == kRaiseFence || statement == kReadFence) {
      sql = statement == kRaiseFence ? raise_fence_sql(kPostgresDialect)
                                     : read_fence_sql(kPostgresDialect);
      types = fence_types;
    } else if (statement == kVersion) {
      sql = version_sql(kPostgresDialect);
    } else {
      const int first = is_put ? kPut : kRemove;
      sql = write_sql(kPostgresDialect, !is_put, static_cast<WriteCondition>(statement - first));
    }
    // The statements hold '$' only as parameter markers; one may appear more than once.
    int parameter_count = 0;
    for (std::size_t at = sql.find('$'); at != std::string::npos; at = sql.find('$', at + 1)) {
      parameter_count = std::max(parameter_count, std::atoi(sql.c_str() + at + 1));
    }
    QueryResult prepared(
        PQprepare(c, statement_name(statement), sql.c_str(), parameter_count, types));
    if (PQresultStatus(prepared.get()) != PGRES_COMMAND_OK) {
      if (PQstatus(c) == CONNECTION_BAD) return connection_error("prepare");
      return {Code::kInternal, std::string("postgresql: prepare ") + statement_name(statement) +
                                   ": " + one_line(PQresultErrorMessage(prepared.get()))};
    }
  }
  return Status::ok();
}

Status PostgresStore::reconnect_if_broken() {
  if (PQstatus(connection_.get()) != CONNECTION_BAD) return Status::ok();
  PQreset(connection_.get());
  if (PQstatus(connection_.get()) != CONNECTION_OK) return connection_error("reconnect");
  // A new session: the prepared statements of the old one are gone.
  return set_up();
}

Result<PostgresStore::QueryResult> PostgresStore::execute(Statement statement,
                                                          std::span<const Parameter> parameters) {
  VIADUCT_RETURN_IF_ERROR(reconnect_if_broken());
  std::array<const char*, kMaxParameters> values{};
  std::array<int, kMaxParameters> lengths{};
  std::array<int, kMaxParameters> formats{};
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    values.at(i) = parameters[i].data;
    lengths.at(i) = parameters[i].length;
    formats.at(i) = 1;  // binary
  }
  count_query();
  QueryResult result(PQexecPrepared(connection_.get(), statement_name(statement),
                                    static_cast<int>(parameters.size()), values.data(),
                                    lengths.data(), formats.data(), /*resultFormat=*/1));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) return result;
  if (PQstatus(connection_.get()) == CONNECTION_BAD) return connection_error("query");
  return Status{Code::kInternal, "postgresql: " + one_line(PQresultErrorMessage(result.get()))};
}

Status PostgresStore::read(std::string_view type, std::span<const std::byte> key,
                           StoredRecord& out) {
  const Parameter parameters[] = {
      {type.data(), static_cast<int>(type.size())},
      {reinterpret_cast<const char*>(key.data()), static_cast<int>(key.size())}};
  auto result = execute(kGet, parameters);
  if (!result) return result.status();
  const PGresult* rows = result->get();
  out.value.clear();
  if (PQntuples(rows) == 0) {
    out.found = false;
    out.version = 0;
    return Status::ok();
  }
  const auto* data = reinterpret_cast<const std::byte*>(PQgetvalue(rows, 0, 0));
  const auto size = static_cast<std::size_t>(PQgetlength(rows, 0, 0));
  out.value.assign(data, data + size);
  out.version = version_at(rows, 1);
  out.found = PQgetlength(rows, 0, 2) == 1 && PQgetvalue(rows, 0, 2)[0] == 0;
  return Status::ok();
}

Result<WriteResult> PostgresStore::write(std::string_view type, std::span<const std::byte> key,
                                         const std::span<const std::byte>* value,
                                         std::optional<std::uint64_t> expected_version,
                                         WriteTag tag, std::int64_t fence_token) {
  const Statement always = value ? kPut : kRemove;
  Statement statement = always;
  if (expected_version) {
    statement = static_cast<Statement>(always + (*expected_version == 0 ? 2 : 1));
  }
  const auto expected = big_endian(expected_version.value_or(0));
  const auto client = big_endian(tag.client_id);
  const auto seq = big_endian(tag.seq);
  const auto token = big_endian(static_cast<std::uint64_t>(fence_token));
  std::array<Parameter, kMaxParameters> parameters{};
  std::size_t count = 0;
  parameters[count++] = {type.data(), static_cast<int>(type.size())};
  parameters[count++] = {reinterpret_cast<const char*>(key.data()), static_cast<int>(key.size())};
  if (value) {
    const char* data = value->empty() ? kNoBytes : reinterpret_cast<const char*>(value->data());
    parameters[count++] = {data, static_cast<int>(value->size())};
  }
  if (expected_version && *expected_version != 0) parameters[count++] = {expected.data(), 8};
  parameters[count++] = {client.data(), 8};
  parameters[count++] = {seq.data(), 8};
  parameters[count++] = {token.data(), 8};
  auto result = execute(statement, std::span(parameters.data(), count));
  if (!result) return result.status();
  if (PQntuples(result->get()) == 1) {
    return WriteResult{.applied = true, .version = version_at(result->get(), 0)};
  }
  // The condition did not hold, or the row's last writer is this write (a retry): the caller
  // needs the version, and whose.
  auto current = execute(kVersion, std::span(parameters.data(), 2));
  if (!current) return current.status();
  const bool found = PQntuples(current->get()) == 1;
  const std::uint64_t version = found ? version_at(current->get(), 0) : 0;
  const bool ours = found && !tag.empty() && version_at(current->get(), 1) == tag.client_id &&
                    version_at(current->get(), 2) == tag.seq;
  return WriteResult{.applied = ours, .version = version};
}

}  // namespace viaduct::cluster::cache

namespace viaduct::cluster::cache {

Result<std::int64_t> PostgresStore::raise_fence(std::string_view type, std::int64_t epoch) {
  const auto big = big_endian(static_cast<std::uint64_t>(epoch));
  const Parameter parameters[] = {{type.data(), static_cast<int>(type.size())}, {big.data(), 8}};
  auto raised = execute(kRaiseFence, parameters);
  if (!raised) return raised.status();
  return read_fence(type);
}

Result<std::int64_t> PostgresStore::read_fence(std::string_view type) {
  const Parameter parameters[] = {{type.data(), static_cast<int>(type.size())}};
  auto result = execute(kReadFence, parameters);
  if (!result) return result.status();
  if (PQntuples(result->get()) == 0) return std::int64_t{0};
  return static_cast<std::int64_t>(version_at(result->get(), 0));
}

}  // namespace viaduct::cluster::cache
