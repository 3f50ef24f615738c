// The authoritative copy of the records, in a database spoken to in SQL behind this one small
// interface: SQLite (one file; the embedded default, for one machine) and PostgreSQL (for a
// cluster that spans machines). The data servers (cluster/cache/) cache records read through it
// and write through it; a write is acknowledged to a client only after put()/remove() returned,
// i.e. after the database committed it, so no acknowledged write is lost whichever server dies.
//
// A record: (type, key) -> value, with a version that grows by one on every write. A delete is a
// write too: it leaves a tombstone (found = false) that keeps the version, so that a later put
// continues from it and versions never go back — what lets a reader tell an old value from a new
// one across a hand-off between servers.
//
// Threading: a RecordStore belongs to one thread at a time (one connection each). Several stores,
// in one process or many, may share one database: every write is one atomic statement.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/status.hpp"

namespace viaduct::cluster::cache {

inline constexpr std::size_t kMaxTypeBytes = 63;
inline constexpr std::size_t kMaxKeyBytes = 1024;
inline constexpr std::size_t kMaxValueBytes = std::size_t{1} << 20;

struct StoredRecord {
  bool found = false;         // false: never written, or deleted
  std::uint64_t version = 0;  // of the last write, a delete's included; 0: never written
  std::vector<std::byte> value;
};

struct WriteResult {
  bool applied = false;       // false: the expected version did not match; nothing was written
  std::uint64_t version = 0;  // applied: the new version; otherwise the current one
  // Nothing was written because a newer owner raised the type's fence above this store's (see
  // fence()): this store may no longer write the type; `version` is not read.
  bool fenced = false;
};

// Who wrote: a client's id and the write's sequence number. The row keeps the last writer's tag,
// so that a write retried after its answer was lost (to the same server or, after a failover, to
// another one) is recognised and answered with the version it made instead of being applied
// twice. {0, 0}: no tag.
struct WriteTag {
  std::uint64_t client_id = 0;
  std::uint64_t seq = 0;
  [[nodiscard]] bool empty() const { return client_id == 0 && seq == 0; }
};

class RecordStore {
 public:
  virtual ~RecordStore() = default;
  // Reads one record into `out` (its value's capacity is reused).
  virtual Status get(std::string_view type, std::span<const std::byte> key, StoredRecord& out) = 0;
  // Writes `value`; the version becomes the previous one (tombstones included) + 1. With
  // `expected_version`, only if the stored version equals it (0: never written).
  virtual Result<WriteResult> put(std::string_view type, std::span<const std::byte> key,
                                  std::span<const std::byte> value,
                                  std::optional<std::uint64_t> expected_version = std::nullopt,
                                  WriteTag tag = {}) = 0;
  // A write whose tag equals the row's last writer's is not applied again: the answer is
  // {applied, the row's version} (a conditional one's too: it was applied, the first time).
  // Deletes (leaves a tombstone with the next version); same `expected_version` rule. Deleting a
  // record that was never written or is deleted already still writes a new version.
  virtual Result<WriteResult> remove(std::string_view type, std::span<const std::byte> key,
                                     std::optional<std::uint64_t> expected_version = std::nullopt,
                                     WriteTag tag = {}) = 0;
  // Fencing, for ownership that moves between servers. Raises the type's fence in the database
  // to `epoch` (never lowers it) and from then on writes the type from this store with `epoch`
  // as the token: a write applies only while the fence is not above its token. A data server
  // raises the fences of the types it serves to its map epoch before it serves them; a server
  // that lost them (marked offline while frozen between its lease check and its write) then
  // writes nothing late over what the new owner acknowledged. Answers the type's fence after
  // the call: `epoch` when this store now writes the type with it; a greater one when a newer
  // owner holds it already (this store's token stays as it was). A type never fenced by this
  // store is written without a token (always applies): tools and tests that write directly.
  virtual Result<std::uint64_t> fence(std::string_view type, std::uint64_t epoch) = 0;
  // Statements sent to the database so far (what a cache saves is measured against this).
  [[nodiscard]] virtual std::uint64_t queries() const = 0;
  [[nodiscard]] virtual std::string_view kind() const = 0;  // "sqlite" or "postgresql"
};

// "sqlite:PATH" (created when missing; "?sync=full" adds an fsync per commit, the default
// "normal" survives any process's death, not a power loss) or a libpq URI "postgresql://..." /
// "postgres://...". The table is created when missing. An error says which part is wrong.
Result<std::unique_ptr<RecordStore>> open_record_store(const std::string& uri);

}  // namespace viaduct::cluster::cache
