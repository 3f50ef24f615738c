// The record store's contract (cluster/cache/record_store.hpp), run over both databases: SQLite on
// a fresh file per test, always; PostgreSQL at VIADUCT_TEST_POSTGRES_URI, skipped when unset
// (tests/pg/with_postgres.sh starts a throwaway server and sets it).
#include "cluster/cache/record_store.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_ports.hpp"

namespace viaduct::cluster::cache {
namespace {

enum class Backend { kSqlite, kPostgres };

std::string_view backend_name(Backend backend) {
  return backend == Backend::kSqlite ? "sqlite" : "postgresql";
}
void PrintTo(Backend backend, std::ostream* out) {
  *out << backend_name(backend);
}

constexpr const char* kNoPostgres =
    "skipped: no PostgreSQL (VIADUCT_TEST_POSTGRES_URI unset; tests/pg/with_postgres.sh starts "
    "one)";

std::string postgres_uri() {
  const char* uri = std::getenv("VIADUCT_TEST_POSTGRES_URI");
  return uri ? uri : "";
}

std::vector<std::byte> bytes(std::string_view text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

std::string text(const std::vector<std::byte>& value) {
  return {reinterpret_cast<const char*>(value.data()), value.size()};
}

std::vector<std::byte> encode_counter(std::uint64_t n) {
  std::vector<std::byte> out(sizeof n);
  std::memcpy(out.data(), &n, sizeof n);
  return out;
}

std::uint64_t decode_counter(const std::vector<std::byte>& value) {
  std::uint64_t n = 0;
  if (value.size() == sizeof n) std::memcpy(&n, value.data(), sizeof n);
  return n;
}

// A write's outcome in one assertion: it succeeded, applied or not, at this version.
::testing::AssertionResult wrote(const Result<WriteResult>& result, bool applied,
                                 std::uint64_t version) {
  if (!result.is_ok()) return ::testing::AssertionFailure() << result.status().to_string();
  if (result.value().applied != applied || result.value().version != version) {
    return ::testing::AssertionFailure()
           << "applied " << result.value().applied << " at version " << result.value().version
           << ", expected applied " << applied << " at version " << version;
  }
  return ::testing::AssertionSuccess();
}

class RecordStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kPostgres) {
      uri_ = postgres_uri();
      if (uri_.empty()) GTEST_SKIP() << kNoPostgres;
    } else {
      std::string pattern =
          (std::filesystem::temp_directory_path() / "viaduct-records.XXXXXX").string();
      ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
      dir_ = pattern;
      uri_ = "sqlite:" + dir_ + "/records.db";
    }
    // PostgreSQL's table outlives the test: a type of this test and process only.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    type_ = std::to_string(::getpid()) + ":" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":" +
            info->name();
    type_.resize(std::min(type_.size(), kMaxTypeBytes));
    store_ = open();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<RecordStore> open() {
    auto store = open_record_store(uri_);
    EXPECT_TRUE(store.is_ok()) << store.status().to_string();
    return store ? std::move(store).value() : nullptr;
  }

  std::string uri_;
  std::string dir_;
  std::string type_;
  std::unique_ptr<RecordStore> store_;
};

TEST_P(RecordStoreTest, GetOfMissingKey_NotFoundVersionZero) {
  StoredRecord record;
  record.value = bytes("stale");
  ASSERT_TRUE(store_->get(type_, bytes("absent"), record).is_ok());
  EXPECT_FALSE(record.found);
  EXPECT_EQ(record.version, 0u);
  EXPECT_TRUE(record.value.empty());
}

TEST_P(RecordStoreTest, PutThenGet_ReturnsValueAtVersionOne) {
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("hello")), true, 1u));
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_TRUE(record.found);
  EXPECT_EQ(record.version, 1u);
  EXPECT_EQ(text(record.value), "hello");
  EXPECT_EQ(store_->kind(), backend_name(GetParam()));
}

TEST_P(RecordStoreTest, EveryWrite_VersionGrowsByOne) {
  for (std::uint64_t i = 1; i <= 5; ++i) {
    auto written = store_->put(type_, bytes("k"), bytes("v" + std::to_string(i)));
    ASSERT_TRUE(written.is_ok()) << written.status().to_string();
    EXPECT_EQ(written->version, i);
  }
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_EQ(record.version, 5u);
  EXPECT_EQ(text(record.value), "v5");
  // Another key of the same type, and the same key under another type, count on their own.
  EXPECT_EQ(store_->put(type_, bytes("other"), bytes("x"))->version, 1u);
  EXPECT_EQ(store_->put(type_ + "b", bytes("k"), bytes("x"))->version, 1u);
}

TEST_P(RecordStoreTest, Delete_LeavesTombstoneWithHigherVersion_LaterPutContinues) {
  ASSERT_EQ(store_->put(type_, bytes("k"), bytes("v"))->version, 1u);
  EXPECT_TRUE(wrote(store_->remove(type_, bytes("k")), true, 2u));
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_FALSE(record.found);
  EXPECT_EQ(record.version, 2u);
  EXPECT_TRUE(record.value.empty());
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("back")), true, 3u));
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_TRUE(record.found);
  EXPECT_EQ(text(record.value), "back");
}

TEST_P(RecordStoreTest, DeleteOfAbsentKey_WritesTombstoneVersions) {
  EXPECT_EQ(store_->remove(type_, bytes("never"))->version, 1u);
  EXPECT_EQ(store_->remove(type_, bytes("never"))->version, 2u);
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("never"), record).is_ok());
  EXPECT_FALSE(record.found);
  EXPECT_EQ(record.version, 2u);
}

TEST_P(RecordStoreTest, PutIfVersion_AppliedOnMatch_OtherwiseReturnsCurrentAndWritesNothing) {
  ASSERT_EQ(store_->put(type_, bytes("k"), bytes("one"))->version, 1u);
  ASSERT_EQ(store_->put(type_, bytes("k"), bytes("two"))->version, 2u);
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("lost"), 1), false, 2u));
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("three"), 2), true, 3u));
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_EQ(text(record.value), "three");
  EXPECT_EQ(record.version, 3u);
  // An expected version on a record that does not exist: nothing is created.
  EXPECT_TRUE(wrote(store_->put(type_, bytes("absent"), bytes("x"), 4), false, 0u));
  ASSERT_TRUE(store_->get(type_, bytes("absent"), record).is_ok());
  EXPECT_FALSE(record.found);
  EXPECT_EQ(record.version, 0u);
}

// A write retried after its answer was lost (same client id and seq) is not applied twice,
// whichever kind of write it is; another writer's tag, or none, writes as usual.
TEST_P(RecordStoreTest, RetriedWriteWithSameTag_NotAppliedTwice_ReportedApplied) {
  const WriteTag tag{77, 1};
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("a"), std::nullopt, tag), true, 1u));
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("a"), std::nullopt, tag), true, 1u));
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_EQ(record.version, 1u);
  // Conditional: applied the first time; the retry finds another version but its own tag.
  const WriteTag cas{77, 2};
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("b"), 1, cas), true, 2u));
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("b"), 1, cas), true, 2u));
  // A create retried.
  const WriteTag create{77, 3};
  EXPECT_TRUE(wrote(store_->put(type_, bytes("new"), bytes("c"), 0, create), true, 1u));
  EXPECT_TRUE(wrote(store_->put(type_, bytes("new"), bytes("c"), 0, create), true, 1u));
  // A delete retried.
  const WriteTag del{77, 4};
  EXPECT_TRUE(wrote(store_->remove(type_, bytes("k"), std::nullopt, del), true, 3u));
  EXPECT_TRUE(wrote(store_->remove(type_, bytes("k"), std::nullopt, del), true, 3u));
  // Another client's write, and an untagged one, apply.
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("d"), std::nullopt, {78, 4}), true, 4u));
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("e")), true, 5u));
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("e")), true, 6u));
  // A conditional write that lost to another writer is still refused.
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("f"), 1, {77, 5}), false, 6u));
}

TEST_P(RecordStoreTest, ExpectedZero_AppliesOnlyToNeverWrittenKey) {
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("first"), 0), true, 1u));
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("second"), 0), false, 1u));
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_EQ(text(record.value), "first");
  // A deleted record was written: its tombstone's version is not 0.
  ASSERT_EQ(store_->remove(type_, bytes("k"))->version, 2u);
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("third"), 0), false, 2u));
}

TEST_P(RecordStoreTest, RemoveIfVersion_AppliedOnMatchOnly) {
  ASSERT_EQ(store_->put(type_, bytes("k"), bytes("v"))->version, 1u);
  EXPECT_TRUE(wrote(store_->remove(type_, bytes("k"), 7), false, 1u));
  EXPECT_TRUE(wrote(store_->remove(type_, bytes("k"), 0), false, 1u));
  EXPECT_TRUE(wrote(store_->remove(type_, bytes("k"), 1), true, 2u));
  // A tombstone as the first write of a key.
  EXPECT_TRUE(wrote(store_->remove(type_, bytes("absent"), 0), true, 1u));
}

TEST_P(RecordStoreTest, BinaryKeysWithNulBytes_AreDistinctRecords) {
  const std::vector<std::byte> a = {std::byte{0}, std::byte{1}};
  const std::vector<std::byte> b = {std::byte{0}, std::byte{2}};
  const std::vector<std::byte> c = {std::byte{0}};
  const std::vector<std::byte> value = {std::byte{0}, std::byte{0xff}, std::byte{0}};
  ASSERT_TRUE(store_->put(type_, a, bytes("a")).is_ok());
  ASSERT_TRUE(store_->put(type_, b, bytes("b")).is_ok());
  ASSERT_TRUE(store_->put(type_, c, value).is_ok());
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, a, record).is_ok());
  EXPECT_EQ(text(record.value), "a");
  ASSERT_TRUE(store_->get(type_, b, record).is_ok());
  EXPECT_EQ(text(record.value), "b");
  ASSERT_TRUE(store_->get(type_, c, record).is_ok());
  EXPECT_EQ(record.value, value);
  EXPECT_EQ(record.version, 1u);
}

TEST_P(RecordStoreTest, EmptyAndOneMiBValues_RoundTrip) {
  std::vector<std::byte> big(kMaxValueBytes);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>((i * 131) >> 3);
  auto written = store_->put(type_, bytes("big"), big);
  ASSERT_TRUE(written.is_ok()) << written.status().to_string();
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("big"), record).is_ok());
  EXPECT_TRUE(record.found);
  EXPECT_TRUE(record.value == big);
  auto empty = store_->put(type_, bytes("empty"), {});
  ASSERT_TRUE(empty.is_ok()) << empty.status().to_string();
  ASSERT_TRUE(store_->get(type_, bytes("empty"), record).is_ok());
  EXPECT_TRUE(record.found);
  EXPECT_TRUE(record.value.empty());
}

TEST_P(RecordStoreTest, OversizedTypeKeyOrValue_RefusedBeforeAnyQuery) {
  const std::string long_type(kMaxTypeBytes + 1, 't');
  const std::vector<std::byte> long_key(kMaxKeyBytes + 1, std::byte{1});
  const std::vector<std::byte> long_value(kMaxValueBytes + 1, std::byte{1});
  StoredRecord record;
  EXPECT_EQ(store_->get(long_type, bytes("k"), record).code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->get("", bytes("k"), record).code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->get(type_, long_key, record).code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->get(type_, {}, record).code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->put(long_type, bytes("k"), bytes("v")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->put(type_, long_key, bytes("v")).status().code(), Code::kInvalidArgument);
  auto too_big = store_->put(type_, bytes("k"), long_value);
  EXPECT_EQ(too_big.status().code(), Code::kInvalidArgument);
  EXPECT_NE(too_big.status().message().find("value"), std::string::npos)
      << too_big.status().message();
  EXPECT_EQ(store_->remove(type_, long_key).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->queries(), 0u);
  // At the limits exactly: accepted.
  const std::string max_type(kMaxTypeBytes, 'm');
  const std::vector<std::byte> max_key(kMaxKeyBytes, std::byte{2});
  auto at_limit =
      store_->put(max_type.substr(0, kMaxTypeBytes - 8) + type_.substr(0, 8), max_key, bytes("v"));
  EXPECT_TRUE(at_limit.is_ok()) << at_limit.status().to_string();
}

TEST_P(RecordStoreTest, TwoStoresOnOneDatabase_SeeEachOthersWrites) {
  auto other = open();
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(store_->put(type_, bytes("k"), bytes("from first")).is_ok());
  StoredRecord record;
  ASSERT_TRUE(other->get(type_, bytes("k"), record).is_ok());
  EXPECT_EQ(text(record.value), "from first");
  auto second = other->put(type_, bytes("k"), bytes("from second"), 1);
  ASSERT_TRUE(second.is_ok());
  EXPECT_TRUE(second->applied);
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_EQ(text(record.value), "from second");
  EXPECT_EQ(record.version, 2u);
}

// Each thread its own store (a store belongs to one thread): compare-and-set increments of one
// counter, retried when another write came between the read and the write. Any lost update would
// leave the counter below 1000.
TEST_P(RecordStoreTest, TwoThreadsCompareAndSet_NoLostUpdate) {
  constexpr int kIncrementsPerThread = 500;
  auto increment = [this](std::string* failure) {
    auto store = open();
    if (!store) {
      *failure = "open failed";
      return;
    }
    StoredRecord record;
    for (int done = 0; done < kIncrementsPerThread;) {
      Status read = store->get(type_, bytes("counter"), record);
      if (!read.is_ok()) {
        *failure = read.to_string();
        return;
      }
      auto written = store->put(type_, bytes("counter"),
                                encode_counter(decode_counter(record.value) + 1), record.version);
      if (!written.is_ok()) {
        *failure = written.status().to_string();
        return;
      }
      if (written->applied) ++done;
    }
  };
  std::string failure_a;
  std::string failure_b;
  std::thread a(increment, &failure_a);
  std::thread b(increment, &failure_b);
  a.join();
  b.join();
  EXPECT_EQ(failure_a, "");
  EXPECT_EQ(failure_b, "");
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("counter"), record).is_ok());
  EXPECT_EQ(decode_counter(record.value), 2u * kIncrementsPerThread);
  EXPECT_EQ(record.version, 2u * kIncrementsPerThread);
}

TEST_P(RecordStoreTest, Queries_CountsEveryStatement) {
  StoredRecord record;
  EXPECT_EQ(store_->queries(), 0u);
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_EQ(store_->queries(), 1u);
  ASSERT_TRUE(store_->put(type_, bytes("k"), bytes("v")).is_ok());
  EXPECT_EQ(store_->queries(), 2u);
  ASSERT_TRUE(store_->put(type_, bytes("k"), bytes("v"), 1).is_ok());  // applied
  EXPECT_EQ(store_->queries(), 3u);
  ASSERT_FALSE(store_->put(type_, bytes("k"), bytes("v"), 1)->applied);  // + the version read
  EXPECT_EQ(store_->queries(), 5u);
  ASSERT_TRUE(store_->remove(type_, bytes("k")).is_ok());
  EXPECT_EQ(store_->queries(), 6u);
  ASSERT_FALSE(store_->remove(type_, bytes("k"), 0)->applied);
  EXPECT_EQ(store_->queries(), 8u);
}

std::string fence_outcome(const Result<std::uint64_t>& fence_now, std::uint64_t epoch) {
  if (!fence_now) return fence_now.status().to_string();
  if (fence_now.value() == epoch) return "raised";
  return fence_now.value() > epoch ? "refused" : "lowered?";
}

// Ownership of a type moves from A (marked offline while frozen between its lease check and
// its write) to B: once B raised the type's fence, whatever A still sends writes nothing, so no
// write B acknowledged is overwritten late. A retry of a write A did apply is still answered
// "applied" (its tag), not "fenced".
TEST_P(RecordStoreTest, Fence_OldOwnerWritesNothingOnceNewOwnerRaisedIt) {
  auto a = open();
  auto b = open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(fence_outcome(a->fence(type_, 5), 5), "raised");
  EXPECT_TRUE(wrote(a->put(type_, bytes("k"), bytes("a's"), std::nullopt, {7, 1}), true, 1u));
  ASSERT_EQ(fence_outcome(b->fence(type_, 6), 6), "raised");
  for (int attempt = 0; attempt < 3; ++attempt) {
    Result<WriteResult> late = attempt == 0   ? a->put(type_, bytes("k"), bytes("late"))
                               : attempt == 1 ? a->put(type_, bytes("k"), bytes("late"), 1)
                                              : a->remove(type_, bytes("k"));
    ASSERT_TRUE(late.is_ok()) << late.status().to_string();
    EXPECT_FALSE(late->applied) << attempt;
    EXPECT_TRUE(late->fenced) << attempt;
  }
  auto retry = a->put(type_, bytes("k"), bytes("a's"), std::nullopt, {7, 1});
  ASSERT_TRUE(retry.is_ok());
  EXPECT_TRUE(retry->applied);
  EXPECT_FALSE(retry->fenced);
  EXPECT_TRUE(wrote(b->put(type_, bytes("k"), bytes("b's")), true, 2u));
  StoredRecord record;
  ASSERT_TRUE(store_->get(type_, bytes("k"), record).is_ok());
  EXPECT_EQ(text(record.value), "b's");
  EXPECT_EQ(record.version, 2u);
  // A cannot take the type back with its old epoch; with a newer one it can, and B is fenced.
  EXPECT_EQ(fence_outcome(a->fence(type_, 5), 5), "refused");
  EXPECT_EQ(fence_outcome(a->fence(type_, 4), 4), "refused");
  ASSERT_EQ(fence_outcome(a->fence(type_, 7), 7), "raised");
  auto b_late = b->put(type_, bytes("k"), bytes("b late"));
  ASSERT_TRUE(b_late.is_ok());
  EXPECT_TRUE(b_late->fenced);
  EXPECT_TRUE(wrote(a->put(type_, bytes("k"), bytes("a again")), true, 3u));
}

// Fences are per type; a store that never fenced a type writes it unconditionally (the tools);
// the same epoch raised twice (two maps, the same owner) keeps writing.
TEST_P(RecordStoreTest, Fence_PerType_UnfencedStoreWrites_SameEpochAgainKeepsWriting) {
  auto a = open();
  ASSERT_NE(a, nullptr);
  const std::string other_type = type_.substr(0, type_.size() - 1) + "~";
  ASSERT_EQ(fence_outcome(a->fence(type_, 9), 9), "raised");
  ASSERT_EQ(fence_outcome(a->fence(type_, 9), 9), "raised");
  EXPECT_TRUE(wrote(a->put(type_, bytes("k"), bytes("v")), true, 1u));
  EXPECT_TRUE(wrote(a->put(other_type, bytes("k"), bytes("v")), true, 1u));
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("tool")), true, 2u));
  EXPECT_EQ(fence_outcome(store_->fence(type_, 8), 8), "refused");
  EXPECT_TRUE(wrote(store_->put(type_, bytes("k"), bytes("tool")), true, 3u));
  auto too_large = a->fence(type_, ~std::uint64_t{0});
  EXPECT_FALSE(too_large.is_ok());
}

INSTANTIATE_TEST_SUITE_P(Databases, RecordStoreTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Backend>& param) {
                           return std::string(backend_name(param.param));
                         });

// An open that cannot succeed fails with an error saying why, and soon.
template <typename Open>
Status failed_open_within(std::chrono::seconds bound, Open open_it) {
  const auto start = std::chrono::steady_clock::now();
  auto store = open_it();
  EXPECT_LT(std::chrono::steady_clock::now() - start, bound);
  EXPECT_FALSE(store.is_ok());
  return store.is_ok() ? Status::ok() : store.status();
}

TEST(OpenRecordStore, UnknownScheme_InvalidArgumentNamingIt) {
  Status status = failed_open_within(std::chrono::seconds(1),
                                     [] { return open_record_store("mysql://db/records"); });
  EXPECT_EQ(status.code(), Code::kInvalidArgument);
  EXPECT_NE(status.message().find("'mysql'"), std::string::npos) << status.message();
  EXPECT_EQ(open_record_store("records.db").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(open_record_store("sqlite:/tmp/x.db?sync=sometimes").status().code(),
            Code::kInvalidArgument);
}

TEST(OpenRecordStore, SqliteUnwritablePath_ErrorNamingThePath) {
  const std::string path = "/nonexistent-viaduct-dir/sub/records.db";
  Status status = failed_open_within(std::chrono::seconds(5),
                                     [&] { return open_record_store("sqlite:" + path); });
  EXPECT_NE(status.message().find(path), std::string::npos) << status.message();
}

TEST(OpenRecordStore, PostgresNothingListening_ErrorWithinSeconds) {
  // A block of ports that bound just now: nothing listens there.
  const int port = viaduct::testing::test_port_block();
  Status status = failed_open_within(std::chrono::seconds(10), [&] {
    return open_record_store("postgresql://viaduct@127.0.0.1:" + std::to_string(port) + "/none");
  });
  EXPECT_NE(status.message().find("postgresql: connect"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find(std::to_string(port)), std::string::npos) << status.message();
}

// The server ends the store's session (as a restart or a cut would): the call in progress fails
// with kConnLost, the next one reconnects and works.
TEST(PostgresStore, SessionKilled_ConnLostThenReconnects) {
  const std::string uri = postgres_uri();
  if (uri.empty()) GTEST_SKIP() << kNoPostgres;
  const std::string name = "viaduct_kill_" + std::to_string(::getpid());
  auto store = open_record_store(uri + (uri.find('?') == std::string::npos ? "?" : "&") +
                                 "application_name=" + name);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  const std::string type =
      name + "_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  ASSERT_TRUE((*store)->put(type, bytes("k"), bytes("v")).is_ok());

  std::unique_ptr<PGconn, decltype(&PQfinish)> admin(PQconnectdb(uri.c_str()), &PQfinish);
  ASSERT_EQ(PQstatus(admin.get()), CONNECTION_OK) << PQerrorMessage(admin.get());
  const std::string kill =
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
      "application_name = '" +
      name + "'";
  std::unique_ptr<PGresult, decltype(&PQclear)> killed(PQexec(admin.get(), kill.c_str()), &PQclear);
  ASSERT_EQ(PQresultStatus(killed.get()), PGRES_TUPLES_OK) << PQerrorMessage(admin.get());
  ASSERT_EQ(PQntuples(killed.get()), 1);

  StoredRecord record;
  Status lost = (*store)->get(type, bytes("k"), record);
  EXPECT_EQ(lost.code(), Code::kConnLost) << lost.to_string();
  Status again = (*store)->get(type, bytes("k"), record);
  ASSERT_TRUE(again.is_ok()) << again.to_string();
  EXPECT_EQ(text(record.value), "v");
  EXPECT_EQ((*store)->put(type, bytes("k"), bytes("w"))->version, 2u);  // statements prepared again
}

}  // namespace
}  // namespace viaduct::cluster::cache
