// `viaduct bench cache`: YCSB-style workloads against the cache cluster, with its database and
// Redis as baselines measured in the same run on the same machine.
//
// A local cluster (tools/cache/local_cluster.hpp: a master and one group of data servers, SQLite
// in a fresh temporary directory, the data servers sleeping in epoll when idle as redis-server
// does; --busy-poll 1 spins them) is loaded with `records` records of one type owned by s1. Then
// the workloads, each for `seconds` at depth 1 and at depth 32, with Zipfian keys (YCSB's constant
// 0.99, scrambled, seeded: every system sees the same key sequence):
//   A: 50 % reads, 50 % updates;  B: 95 % reads, 5 % updates;  C: reads only (depth 1).
// Systems:
//   - viaduct, depth 1: a CacheClient (synchronous calls, through the client's failover layer);
//   - viaduct, depth 32: 32 requests in flight on one transport::Channel straight to the owner
//     the map names (the cache protocol, without the client's failover layer: the data path);
//   - sqlite: the same operations through open_record_store on the cluster's file, once the
//     cluster is stopped (depth 32: 32 threads, each with its own store);
//   - postgresql (depth 1), when --postgres or VIADUCT_TEST_POSTGRES_URI gives a database;
//   - redis: Debian's redis-server, started here without persistence (--save "" --appendonly no),
//     GET/SET through hiredis: depth 1 one at a time, depth 32 pipelined on one connection.
// Reports p50/p99 per operation (reads and updates apart too) and throughput, as a table and JSON,
// and the ratio viaduct/Redis of the get p50 at depth 1 (target: no slower than Redis GET).
#pragma once

#include <cstdint>
#include <string>

namespace viaduct::bench {

struct CacheBenchOptions {
  std::string tool;                 // path of the viaduct binary (master, cache-server)
  std::uint16_t base_port = 29400;  // the cluster's ports: base .. base + 1 + 2 * servers
  int redis_port = 29450;           // the first port tried for redis-server on 127.0.0.1
  std::uint32_t records = 10000;
  std::uint32_t value_bytes = 100;
  double seconds = 3;         // per workload, system and depth
  std::uint32_t servers = 2;  // data servers in the one group
  int busy_poll = 0;          // cache_server_busy_poll of the data servers
  std::uint64_t seed = 1;
  std::string postgres;  // a libpq URI; empty: VIADUCT_TEST_POSTGRES_URI, or skipped
  std::string json_path;
};

// 0 when every system ran (the target is reported, not enforced); 1 on a failure (the JSON file
// then carries an "error" beside what was measured).
int run_cache_bench(const CacheBenchOptions& options);

}  // namespace viaduct::bench
