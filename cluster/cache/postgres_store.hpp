// The record store in PostgreSQL: for a cluster whose data servers run on several machines. One
// connection per store; the statements are prepared once per connection and exchanged in binary
// (no escaping, no text parsing of a 1 MiB value).
//
// A broken connection (server restart, network cut) fails the call in progress with kConnLost
// and libpq's message; the next call reconnects (PQreset, bounded by connect_timeout) and
// prepares the statements again. A write whose reply was lost may or may not have committed:
// the caller finds out by reading the version, as after any unacknowledged write.
#pragma once

#include <libpq-fe.h>

#include <array>
#include <memory>

#include "cluster/cache/sql_record_store.hpp"

namespace viaduct::cluster::cache {

class PostgresStore final : public SqlRecordStore {
 public:
  // A libpq URI, "postgresql://..." or "postgres://...". Without a connect_timeout in it, 5 s:
  // an unreachable server fails the open instead of hanging it.
  static Result<std::unique_ptr<PostgresStore>> open(const std::string& uri);

  [[nodiscard]] std::string_view kind() const override { return "postgresql"; }

 protected:
  Status read(std::string_view type, std::span<const std::byte> key, StoredRecord& out) override;
  Result<WriteResult> write(std::string_view type, std::span<const std::byte> key,
                            const std::span<const std::byte>* value,
                            std::optional<std::uint64_t> expected_version, WriteTag tag,
                            std::int64_t fence_token) override;
  Result<std::int64_t> raise_fence(std::string_view type, std::int64_t epoch) override;
  Result<std::int64_t> read_fence(std::string_view type) override;

 private:
  struct ConnectionCloser {
    void operator()(PGconn* connection) const { PQfinish(connection); }
  };
  struct ResultClearer {
    void operator()(PGresult* result) const { PQclear(result); }
  };
  using Connection = std::unique_ptr<PGconn, ConnectionCloser>;
  using QueryResult = std::unique_ptr<PGresult, ResultClearer>;

  // The prepared statements; a write's three conditions follow WriteCondition's order.
  enum Statement : int {
    kGet,
    kVersion,
    kPut,
    kPutIfVersion,
    kPutIfNeverWritten,
    kRemove,
    kRemoveIfVersion,
    kRemoveIfNeverWritten,
    kRaiseFence,
    kReadFence,
    kStatementCount,
  };
  // One parameter in binary format; never a null pointer (libpq would send SQL NULL).
  struct Parameter {
    const char* data;
    int length;
  };

  explicit PostgresStore(Connection connection) : connection_(std::move(connection)) {}
  Status set_up();  // the tables when missing (one store at a time), then the statements
  Status create_tables();
  Status prepare_statements();
  Status reconnect_if_broken();
  Result<QueryResult> execute(Statement statement, std::span<const Parameter> parameters);
  Status connection_error(const std::string& doing) const;

  Connection connection_;
};

}  // namespace viaduct::cluster::cache
