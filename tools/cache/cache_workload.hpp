// A client workload against the cache cluster that is also its judge: every read is checked
// against what this client had acknowledged before the read began (a stale read is a value older
// than the last acknowledged write of that key), and at the end every key is read back — through
// the cluster and from the database directly — and must equal the last acknowledged write.
// Used by `viaduct cache load`, the cluster demo, the tests and `viaduct bench cluster-failover`.
//
// One client, one thread, one writer per key: "acknowledged before the read began" is then
// exactly this client's last acknowledged write.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/cache/cache_client.hpp"
#include "tools/perf/latency_histogram.hpp"

namespace viaduct::tools {

// One operation of the workload, as on_operation sees it.
struct CacheOperation {
  std::int64_t at_ns = 0;  // when it completed (steady_now_ns)
  std::int64_t latency_ns = 0;
  bool write = false;
  std::string_view type;
  std::uint32_t key = 0;
};

struct CacheWorkloadOptions {
  std::vector<std::string> types;  // empty: every type of the map
  std::uint32_t keys_per_type = 64;
  std::uint32_t write_percent = 30;
  std::uint32_t delete_percent = 10;  // of the writes
  std::uint32_t value_bytes = 32;
  std::uint64_t seed = 1;
  double seconds = 5;
  std::uint64_t operations = 0;  // 0: until `seconds` or the stop flag
  // Called after each operation (the demo's plot, the benches' stalls and keys); may be empty.
  std::function<void(const CacheOperation& op)> on_operation;
};

struct CacheWorkloadReport {
  std::uint64_t operations = 0;
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t errors = 0;            // an operation the application saw fail
  std::uint64_t stale_reads = 0;       // older than the last acknowledged write
  std::uint64_t wrong_values = 0;      // the acknowledged version with another value
  std::uint64_t lost_writes = 0;       // at the end: a key that is not its last acknowledged write
  std::uint64_t lost_in_database = 0;  // the same, read from the database directly
  std::int64_t max_latency_ns = 0;
  std::string first_error;
  perf::LatencyHistogram latency;
  [[nodiscard]] bool held() const {
    return errors == 0 && stale_reads == 0 && wrong_values == 0 && lost_writes == 0 &&
           lost_in_database == 0;
  }
};

class CacheWorkload {
 public:
  CacheWorkload(cluster::cache::CacheClient& client, CacheWorkloadOptions options);
  // Runs until the options' limit or `stop`.
  void run(const std::atomic<bool>& stop);
  // Reads every key back through the client, and from `database` (a record store URI) when
  // given, counting what differs from the last acknowledged write.
  void verify(const std::string& database);
  [[nodiscard]] const CacheWorkloadReport& report() const { return report_; }

 private:
  struct Acked {
    bool written = false;  // this client acknowledged a write of the key
    bool found = false;
    std::uint64_t version = 0;
    std::string value;
  };
  void check_read(const Acked& acked, const cluster::cache::CacheRecord& got,
                  const std::string& what);
  void error(const Status& s, const std::string& what);

  cluster::cache::CacheClient& client_;
  CacheWorkloadOptions options_;
  std::vector<std::string> types_;
  std::vector<std::vector<Acked>> acked_;  // [type][key]
  CacheWorkloadReport report_;
};

}  // namespace viaduct::tools
