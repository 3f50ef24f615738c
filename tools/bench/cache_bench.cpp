#include "tools/bench/cache_bench.hpp"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/cache/cache_client.hpp"
#include "cluster/cache/record_store.hpp"
#include "cluster/member_auth.hpp"
#include "tools/bench/child_process.hpp"
#include "tools/bench/zipfian.hpp"
#include "tools/cache/local_cluster.hpp"
#include "tools/perf/latency_histogram.hpp"
#include "transport/channel.hpp"
#include "transport/clock.hpp"

namespace viaduct::bench {
namespace {

namespace cc = viaduct::cluster::cache;
namespace vt = viaduct::transport;
using perf::LatencyHistogram;

constexpr int kDepth = 32;
constexpr std::int64_t kLoadSeconds = 120;
constexpr std::size_t kOpsPerWorkload = std::size_t{1} << 18;  // cycled through
constexpr char kType[] = "t1a";                                // owned by s1
constexpr char kPostgresType[] = "viaduct-bench-cache";        // a shared database: our own type

struct Op {
  std::uint32_t key = 0;
  bool write = false;
};

struct Workload {
  const char* name;
  int read_percent;
  bool deep;  // also measured at depth 32
  std::vector<Op> ops;
};

std::vector<Op> make_ops(std::uint32_t records, int read_percent, std::uint64_t seed) {
  ZipfianGenerator zipf(records, seed);
  std::vector<Op> ops(kOpsPerWorkload);
  for (auto& op : ops) {
    op.key = static_cast<std::uint32_t>(zipf.next());
    op.write = zipf.uniform() * 100.0 >= read_percent;
  }
  return ops;
}

// The records' keys ("user" + index, as YCSB names them) and a value source per runner.
struct Keys {
  std::vector<std::string> names;
  [[nodiscard]] std::span<const std::byte> operator[](std::uint32_t i) const {
    return cc::as_bytes(names[i]);
  }
};

class Values {
 public:
  explicit Values(std::size_t bytes) : bytes_(bytes, std::byte{'v'}) {}
  // Every update writes a different value: a counter in its first bytes.
  std::span<const std::byte> next() {
    ++counter_;
    std::memcpy(bytes_.data(), &counter_, std::min(bytes_.size(), sizeof(counter_)));
    return bytes_;
  }

 private:
  std::vector<std::byte> bytes_;
  std::uint64_t counter_ = 0;
};

struct Measured {
  LatencyHistogram all, reads, writes;
  std::uint64_t errors = 0;
  std::string first_error;
  double seconds = 0;

  void record(const Op& op, std::int64_t ns) {
    all.record(ns);
    (op.write ? writes : reads).record(ns);
  }
  void fail(const Status& s) {
    if (errors++ == 0) first_error = s.to_string();
  }
  void merge(const Measured& other) {
    all.merge(other.all);
    reads.merge(other.reads);
    writes.merge(other.writes);
    if (errors == 0 && other.errors != 0) first_error = other.first_error;
    errors += other.errors;
    seconds = std::max(seconds, other.seconds);
  }
};

double seconds_since(std::int64_t start, std::int64_t now) {
  return static_cast<double>(now - start) / 1e9;
}

// Depth 1: one operation at a time for `seconds`, from ops[first] on. The first error ends it.
template <typename Fn>
Measured run_sync(const std::vector<Op>& ops, std::size_t first, double seconds, Fn&& fn) {
  Measured m;
  std::int64_t start = steady_now_ns();
  std::int64_t end = start + static_cast<std::int64_t>(seconds * 1e9);
  std::int64_t t = start;
  for (std::size_t i = first; t < end; ++i) {
    const Op& op = ops[i % ops.size()];
    Status s = fn(op);
    std::int64_t done = steady_now_ns();
    if (!s) {
      m.fail(s);
      break;
    }
    m.record(op, done - t);
    t = done;
  }
  m.seconds = seconds_since(start, t);
  return m;
}

// Depth N: a system that keeps requests in flight, each in a slot.
struct Finished {
  std::uint32_t slot = 0;
  Status status;
};
class Pipeline {
 public:
  virtual ~Pipeline() = default;
  virtual Status issue(const Op& op, std::uint32_t slot) = 0;
  // Makes progress (waiting, or polling once); appends the slots whose answers arrived.
  virtual Status progress(std::vector<Finished>& done) = 0;
};

// `depth` requests in flight for `seconds`; each answer's slot is refilled at once. Latency per
// operation: from its issue to its answer being taken. A failed answer stops the refills.
Measured run_pipelined(Pipeline& p, const std::vector<Op>& ops, double seconds, int depth) {
  Measured m;
  std::vector<std::int64_t> started(depth);
  std::vector<const Op*> op_of(depth);
  std::size_t next = 0;
  std::size_t in_flight = 0;
  bool refill = true;
  auto issue = [&](std::uint32_t slot) {
    const Op& op = ops[next++ % ops.size()];
    op_of[slot] = &op;
    started[slot] = steady_now_ns();
    if (Status s = p.issue(op, slot); !s) {
      m.fail(s);
      refill = false;
      return;
    }
    ++in_flight;
  };
  std::int64_t start = steady_now_ns();
  std::int64_t end = start + static_cast<std::int64_t>(seconds * 1e9);
  std::int64_t t = start;
  for (int slot = 0; slot < depth && refill; ++slot) issue(static_cast<std::uint32_t>(slot));
  std::vector<Finished> done;
  while (in_flight > 0) {
    done.clear();
    if (Status s = p.progress(done); !s) {
      m.fail(s);
      break;
    }
    t = steady_now_ns();
    for (const auto& f : done) {
      --in_flight;
      if (!f.status) {
        m.fail(f.status);
        refill = false;
        continue;
      }
      m.record(*op_of[f.slot], t - started[f.slot]);
      if (refill && t < end) issue(f.slot);
    }
  }
  m.seconds = seconds_since(start, t);
  return m;
}

// --- viaduct at depth 32: the cache protocol on one channel to the owner ------------------------

class ChannelPipeline final : public Pipeline {
 public:
  ChannelPipeline(vt::Channel& channel, const Keys& keys, std::size_t value_bytes,
                  std::uint64_t map_epoch, std::uint64_t client_id)
      : channel_(channel),
        keys_(keys),
        values_(value_bytes),
        map_epoch_(map_epoch),
        client_id_(client_id),
        contexts_(kDepth) {
    for (std::uint32_t i = 0; i < contexts_.size(); ++i) contexts_[i] = {this, i};
  }

  Status issue(const Op& op, std::uint32_t slot) override {
    cc::CacheRequest r;
    r.op = op.write ? cc::CacheOp::kPut : cc::CacheOp::kGet;
    r.type = kType;
    r.key = keys_[op.key];
    r.map_epoch = map_epoch_;
    if (op.write) {
      r.value = values_.next();
      r.client_id = client_id_;
      r.seq = ++seq_;  // a fresh tag per write: none is taken for a retry of another
    }
    VIADUCT_RETURN_IF_ERROR(cc::encode_cache_request(r, request_));
    for (;;) {
      Status s = channel_.call_async(request_, &ChannelPipeline::on_answer, &contexts_[slot]);
      if (s.code() != Code::kWouldBlock) return s;
      (void)channel_.poll();
    }
  }

  Status progress(std::vector<Finished>& done) override {
    (void)channel_.poll();
    if (!channel_.healthy()) return channel_.error();
    done.insert(done.end(), arrived_.begin(), arrived_.end());
    arrived_.clear();
    return Status::ok();
  }

 private:
  struct Context {
    ChannelPipeline* self = nullptr;
    std::uint32_t slot = 0;
  };
  static void on_answer(void* user, const vt::Response& response) {
    auto* c = static_cast<Context*>(user);
    Status s = response.status;
    auto status = static_cast<cc::CacheStatus>(response.app_status);
    if (s && status != cc::CacheStatus::kOk && status != cc::CacheStatus::kNotFound) {
      s = Status(Code::kInternal, "answer " + std::string(cc::cache_status_name(status)));
    }
    c->self->arrived_.push_back({c->slot, s});
  }

  vt::Channel& channel_;
  const Keys& keys_;
  Values values_;
  std::uint64_t map_epoch_;
  std::uint64_t client_id_;
  std::uint64_t seq_ = 0;
  std::vector<Context> contexts_;
  std::vector<std::byte> request_;
  std::vector<Finished> arrived_;
};

// --- Redis -------------------------------------------------------------------------------------

struct RedisFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
using RedisConn = std::unique_ptr<redisContext, RedisFree>;

Status redis_error(redisContext* c, const char* doing) {
  return Status(Code::kConnLost, std::string("redis ") + doing + ": " + c->errstr);
}

// A reply taken: an error reply is an error; the reply is freed.
Status take_reply(void* raw) {
  auto* reply = static_cast<redisReply*>(raw);
  if (reply == nullptr) return Status(Code::kConnLost, "redis: no reply");
  Status s;
  if (reply->type == REDIS_REPLY_ERROR)
    s = Status(Code::kInternal, "redis: " + std::string(reply->str));
  freeReplyObject(reply);
  return s;
}

Status redis_call(redisContext* c, const Op& op, const Keys& keys, Values& values) {
  auto key = keys[op.key];
  void* reply = nullptr;
  if (op.write) {
    auto value = values.next();
    reply = redisCommand(c, "SET %b %b", key.data(), key.size(), value.data(), value.size());
  } else {
    reply = redisCommand(c, "GET %b", key.data(), key.size());
  }
  if (reply == nullptr) return redis_error(c, "call");
  return take_reply(reply);
}

// The records, SET in pipelined batches.
Status redis_load(redisContext* c, const Keys& keys, Values& values, std::uint32_t records) {
  constexpr std::uint32_t kBatch = 1000;
  for (std::uint32_t first = 0; first < records; first += kBatch) {
    std::uint32_t last = std::min(records, first + kBatch);
    for (std::uint32_t i = first; i < last; ++i) {
      auto value = values.next();
      if (redisAppendCommand(c, "SET %b %b", keys[i].data(), keys[i].size(), value.data(),
                             value.size()) != REDIS_OK) {
        return redis_error(c, "append");
      }
    }
    for (std::uint32_t i = first; i < last; ++i) {
      void* reply = nullptr;
      if (redisGetReply(c, &reply) != REDIS_OK) return redis_error(c, "load");
      VIADUCT_RETURN_IF_ERROR(take_reply(reply));
    }
  }
  return Status::ok();
}

// Pipelined on one connection: answers come back in order.
class RedisPipeline final : public Pipeline {
 public:
  RedisPipeline(redisContext* c, const Keys& keys, std::size_t value_bytes)
      : c_(c), keys_(keys), values_(value_bytes) {}

  Status issue(const Op& op, std::uint32_t slot) override {
    auto key = keys_[op.key];
    int rc = REDIS_OK;
    if (op.write) {
      auto value = values_.next();
      rc = redisAppendCommand(c_, "SET %b %b", key.data(), key.size(), value.data(), value.size());
    } else {
      rc = redisAppendCommand(c_, "GET %b", key.data(), key.size());
    }
    if (rc != REDIS_OK) return redis_error(c_, "append");
    // Sent now, as the channel sends each request when it is issued.
    for (int written = 0; written == 0;) {
      if (redisBufferWrite(c_, &written) != REDIS_OK) return redis_error(c_, "write");
    }
    order_.push_back(slot);
    return Status::ok();
  }

  Status progress(std::vector<Finished>& done) override {
    void* reply = nullptr;
    if (redisGetReply(c_, &reply) != REDIS_OK) return redis_error(c_, "read");
    for (;;) {
      done.push_back({order_.front(), take_reply(reply)});
      order_.pop_front();
      reply = nullptr;
      // Those already read: without blocking.
      if (redisReaderGetReply(c_->reader, &reply) != REDIS_OK) return redis_error(c_, "read");
      if (reply == nullptr) return Status::ok();
    }
  }

 private:
  redisContext* c_;
  const Keys& keys_;
  Values values_;
  std::deque<std::uint32_t> order_;
};

// The first of `count` ports from `first` on which 127.0.0.1 can listen now.
std::optional<int> free_port(int first, int count) {
  for (int port = first; port < first + count; ++port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
    ::close(fd);
    if (ok) return port;
  }
  return std::nullopt;
}

std::string find_in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (std::size_t at = 0; at <= dirs.size();) {
    std::size_t colon = dirs.find(':', at);
    if (colon == std::string::npos) colon = dirs.size();
    std::string candidate = dirs.substr(at, colon - at) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    at = colon + 1;
  }
  return {};
}

// --- the report ----------------------------------------------------------------------------------

double us(std::int64_t ns) {
  return static_cast<double>(ns) / 1e3;
}

nlohmann::json entry_of(const char* system, const Workload& w, int depth, const char* path,
                        const Measured& m) {
  double ops_per_s = m.seconds > 0 ? static_cast<double>(m.all.count()) / m.seconds : 0;
  nlohmann::json j = {{"system", system},
                      {"workload", w.name},
                      {"read_percent", w.read_percent},
                      {"depth", depth},
                      {"path", path},
                      {"ops", m.all.count()},
                      {"ops_per_s", ops_per_s},
                      {"p50_us", us(m.all.quantile(0.5))},
                      {"p99_us", us(m.all.quantile(0.99))},
                      {"get_p50_us", us(m.reads.quantile(0.5))},
                      {"get_p99_us", us(m.reads.quantile(0.99))},
                      {"put_p50_us", us(m.writes.quantile(0.5))},
                      {"put_p99_us", us(m.writes.quantile(0.99))},
                      {"errors", m.errors}};
  if (!m.first_error.empty()) j["first_error"] = m.first_error;
  std::printf("%-10s %-8s %5d %9.1f %9.1f %10.0f %9.1f %9.1f%s%s\n", system, w.name, depth,
              j["p50_us"].get<double>(), j["p99_us"].get<double>(), ops_per_s,
              j["get_p50_us"].get<double>(), j["put_p50_us"].get<double>(),
              m.errors ? "  error: " : "", m.first_error.c_str());
  std::fflush(stdout);
  return j;
}

nlohmann::json skipped(const char* system, const std::string& why) {
  std::printf("%-10s skipped: %s\n", system, why.c_str());
  std::fflush(stdout);
  return {{"system", system}, {"skipped", why}};
}

const char* busy_note(int busy_poll) {
  return busy_poll != 0 ? " (the data servers spin on their connections, one core each: always "
                          "awake, as Redis is in its event loop)"
                        : " (the data servers sleep in epoll when idle, as Redis does)";
}

class Bench {
 public:
  explicit Bench(const CacheBenchOptions& o) : o_(o) {
    workloads_ = {{"A", 50, true, {}}, {"B", 95, true, {}}, {"C", 100, false, {}}};
    for (auto& w : workloads_) w.ops = make_ops(o.records, w.read_percent, o.seed);
    for (std::uint32_t i = 0; i < o.records; ++i) keys_.names.push_back("user" + std::to_string(i));
  }

  int run();

 private:
  Status run_viaduct(const std::string& dir);
  Status run_store(const char* system, const std::string& uri, const char* type, bool load,
                   bool deep);
  Status run_redis();
  int finish(const Status& failure);

  template <typename Fn>
  void sync_all(const char* system, const char* path, Fn&& fn) {
    for (const auto& w : workloads_) {
      results_.push_back(entry_of(system, w, 1, path, run_sync(w.ops, 0, o_.seconds, fn)));
    }
  }
  void record_errors(const char* system) {
    for (const auto& r : results_) {
      if (r.value("system", "") == system && r.value("errors", 0) != 0 && failure_.empty()) {
        failure_ = std::string(system) + ": " + r.value("first_error", std::string());
      }
    }
  }

  const CacheBenchOptions& o_;
  std::vector<Workload> workloads_;
  Keys keys_;
  std::vector<nlohmann::json> results_;
  std::string failure_;  // errors while measuring viaduct or Redis
};

Status Bench::run_viaduct(const std::string& dir) {
  tools::LocalClusterOptions co;
  co.tool = o_.tool;
  co.dir = dir;
  co.base_port = o_.base_port;
  co.groups = 1;
  co.servers_per_group = o_.servers;
  co.tunables = {{"cache_server_busy_poll", o_.busy_poll}};
  auto cluster = tools::LocalCluster::create(co);
  if (!cluster) return cluster.status().with_context("cluster");
  if (Status s = cluster.value()->start(); !s) return s.with_context("cluster start");
  auto options = cluster.value()->client_options("bench-cache");
  if (!options) return options.status();
  auto client = cc::CacheClient::open(options.value());
  if (!client) return client.status().with_context("cache client");
  auto& cl = *client.value();
  Values values(o_.value_bytes);
  // Bounded: on this shared 2-vCPU host the load was seen slowing to one put per attempt timeout
  // (50 ms) after a few thousand records; a bench must end with a reason, not hang.
  std::int64_t load_deadline = steady_now_ns() + kLoadSeconds * 1'000'000'000;
  for (std::uint32_t i = 0; i < o_.records; ++i) {
    auto put = cl.put(kType, keys_[i], values.next());
    if (!put) return put.status().with_context("loading record " + std::to_string(i));
    if (steady_now_ns() > load_deadline) {
      return Status(Code::kTimeout, "loading through the cluster: " + std::to_string(i + 1) +
                                        " of " + std::to_string(o_.records) + " records in " +
                                        std::to_string(kLoadSeconds) + " s");
    }
  }
  sync_all("viaduct", "CacheClient: synchronous calls through the client's failover layer",
           [&](const Op& op) -> Status {
             if (op.write) return cl.put(kType, keys_[op.key], values.next()).status();
             return cl.get(kType, keys_[op.key]).status();
           });

  const cc::MapServer* owner = cl.map().owner_of(kType);
  if (owner == nullptr) return Status(Code::kInternal, std::string("no owner of ") + kType);
  auto address = vt::Address::parse(owner->listen);
  if (!address) return address.status();
  auto domain = vt::Domain::open(address.value());
  if (!domain) return domain.status();
  auto channel = vt::Channel::connect(*domain.value(), address.value(), vt::ChannelOptions{}, 5000);
  if (!channel) return channel.status().with_context("connect to " + owner->listen);
  std::uint64_t client_id = 0x6265'6e63'6800'0000ULL ^ static_cast<std::uint64_t>(::getpid());
  for (const auto& w : workloads_) {
    if (!w.deep) continue;
    ChannelPipeline pipeline(*channel.value(), keys_, o_.value_bytes, cl.map().epoch, client_id);
    results_.push_back(entry_of(
        "viaduct", w, kDepth,
        "one transport channel straight to the owner, 32 requests in flight: the data path "
        "without the client's failover layer",
        run_pipelined(pipeline, w.ops, o_.seconds, kDepth)));
  }
  record_errors("viaduct");
  return Status::ok();  // the cluster's processes are killed with it
}

Status Bench::run_store(const char* system, const std::string& uri, const char* type, bool load,
                        bool deep) {
  auto store = cc::open_record_store(uri);
  if (!store) return store.status();
  Values values(o_.value_bytes);
  for (std::uint32_t i = 0; load && i < o_.records; ++i) {
    auto put = store.value()->put(type, keys_[i], values.next());
    if (!put) return put.status().with_context("loading record " + std::to_string(i));
  }
  cc::StoredRecord record;
  sync_all(system, "open_record_store, one connection", [&](const Op& op) -> Status {
    if (op.write) return store.value()->put(type, keys_[op.key], values.next()).status();
    return store.value()->get(type, keys_[op.key], record);
  });
  if (!deep) return Status::ok();
  for (const auto& w : workloads_) {
    if (!w.deep) continue;
    std::vector<Measured> each(kDepth);
    std::vector<std::thread> threads;
    for (int t = 0; t < kDepth; ++t) {
      threads.emplace_back([&, t] {
        auto own = cc::open_record_store(uri);
        if (!own) {
          each[t].fail(own.status());
          return;
        }
        Values v(o_.value_bytes);
        cc::StoredRecord r;
        each[t] =
            run_sync(w.ops, w.ops.size() / kDepth * t, o_.seconds, [&](const Op& op) -> Status {
              if (op.write) return own.value()->put(type, keys_[op.key], v.next()).status();
              return own.value()->get(type, keys_[op.key], r);
            });
      });
    }
    for (auto& th : threads) th.join();
    Measured all;
    for (const auto& m : each) all.merge(m);
    results_.push_back(
        entry_of(system, w, kDepth, "32 threads, each with its own connection", all));
  }
  return Status::ok();
}

Status Bench::run_redis() {
  std::string server = find_in_path("redis-server");
  if (server.empty()) {
    results_.push_back(skipped("redis", "no redis-server (scripts/install-deps.sh installs it)"));
    return Status::ok();
  }
  auto port = free_port(o_.redis_port, 20);
  if (!port)
    return Status(Code::kResource, "redis: no free port from " + std::to_string(o_.redis_port));
  // No persistence: nothing on disk, nothing forked. Killed (SIGKILL, by its PID) with `redis`.
  ChildProcess redis({server, "--bind", "127.0.0.1", "--port", std::to_string(*port), "--save", "",
                      "--appendonly", "no", "--loglevel", "warning", "--daemonize", "no"},
                     "/dev/null");
  RedisConn c;
  for (std::int64_t deadline = steady_now_ns() + 10'000'000'000; !c;) {
    RedisConn attempt(redisConnect("127.0.0.1", *port));
    if (attempt && attempt->err == 0) {
      void* pong = redisCommand(attempt.get(), "PING");
      if (pong != nullptr && take_reply(pong)) c = std::move(attempt);
    }
    if (!c && steady_now_ns() > deadline) {
      return Status(Code::kTimeout, "redis-server did not answer PING on port " +
                                        std::to_string(*port) + ": " + redis.output());
    }
    if (!c) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Values values(o_.value_bytes);
  if (Status s = redis_load(c.get(), keys_, values, o_.records); !s) return s;
  sync_all("redis", "hiredis, one request at a time",
           [&](const Op& op) { return redis_call(c.get(), op, keys_, values); });
  for (const auto& w : workloads_) {
    if (!w.deep) continue;
    RedisPipeline pipeline(c.get(), keys_, o_.value_bytes);
    results_.push_back(entry_of("redis", w, kDepth,
                                "hiredis, 32 pipelined requests on one connection",
                                run_pipelined(pipeline, w.ops, o_.seconds, kDepth)));
  }
  record_errors("redis");
  return Status::ok();
}

int Bench::run() {
  char dir_template[] = "/tmp/viaduct-bench-cache-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) return finish(Status(Code::kResource, "mkdtemp failed"));
  std::string dir = dir_template;
  std::printf(
      "viaduct bench cache: %u records of %u bytes, Zipfian keys (%.2f, scrambled, seed "
      "%llu), %.1f s per measurement; %u CPUs\n",
      o_.records, o_.value_bytes, kYcsbZipfianConstant, static_cast<unsigned long long>(o_.seed),
      o_.seconds, std::thread::hardware_concurrency());
  std::printf("viaduct: 1 group of %u data servers, SQLite, cache_server_busy_poll=%d%s\n",
              o_.servers, o_.busy_poll, busy_note(o_.busy_poll));
  std::printf("%-10s %-8s %5s %9s %9s %10s %9s %9s\n", "system", "workload", "depth", "p50 us",
              "p99 us", "ops/s", "get p50", "put p50");
  std::fflush(stdout);
  std::string database = "sqlite:" + dir + "/cache.db";
  Status s = run_viaduct(dir);
  if (s) s = run_store("sqlite", database, kType, false, true);
  if (s) {
    const char* env = std::getenv("VIADUCT_TEST_POSTGRES_URI");
    std::string uri = !o_.postgres.empty() ? o_.postgres : (env ? env : "");
    if (uri.empty()) {
      results_.push_back(
          skipped("postgresql", "no PostgreSQL (--postgres URI or VIADUCT_TEST_POSTGRES_URI)"));
    } else {
      s = run_store("postgresql", uri, kPostgresType, true, false);
    }
  }
  if (s) s = run_redis();
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  if (s && !failure_.empty()) s = Status(Code::kInternal, failure_);
  return finish(s);
}

// The summary, the JSON file; 1 on a failure.
int Bench::finish(const Status& failure) {
  auto find = [&](const char* system, const char* workload) -> const nlohmann::json* {
    for (const auto& r : results_) {
      if (r.value("system", "") == system && r.value("workload", "") == workload &&
          r.value("depth", 0) == 1) {
        return &r;
      }
    }
    return nullptr;
  };
  nlohmann::json ratios = nlohmann::json::object();
  nlohmann::json read_only = nlohmann::json::object();
  std::optional<bool> met;
  for (const auto& w : workloads_) {
    const auto* v = find("viaduct", w.name);
    const auto* r = find("redis", w.name);
    if (v == nullptr || r == nullptr || (*r)["get_p50_us"].get<double>() <= 0) continue;
    double ratio = (*v)["get_p50_us"].get<double>() / (*r)["get_p50_us"].get<double>();
    ratios[w.name] = ratio;
    std::printf("viaduct/redis get p50 at depth 1, workload %s: %.2f (%.1f / %.1f us)\n", w.name,
                ratio, (*v)["get_p50_us"].get<double>(), (*r)["get_p50_us"].get<double>());
    if (w.read_percent == 100) {
      read_only = {{"viaduct_get_p50_us", (*v)["get_p50_us"]},
                   {"redis_get_p50_us", (*r)["get_p50_us"]},
                   {"ratio", ratio}};
      met = ratio <= 1.0;
    }
  }
  if (met) {
    std::printf("target (viaduct get p50 at depth 1, reads only, no slower than Redis GET): %s\n",
                *met ? "met" : "not met");
  }
  nlohmann::json doc = {
      {"bench", "cache"},
      {"records", o_.records},
      {"value_bytes", o_.value_bytes},
      {"seconds", o_.seconds},
      {"seed", o_.seed},
      {"zipfian_constant", kYcsbZipfianConstant},
      {"depths", {1, kDepth}},
      {"cpus", std::thread::hardware_concurrency()},
      {"workloads",
       {{"A", "50% reads, 50% updates"}, {"B", "95% reads, 5% updates"}, {"C", "reads only"}}},
      {"cluster",
       {{"groups", 1},
        {"servers_per_group", o_.servers},
        {"database", "sqlite"},
        {"cache_server_busy_poll", o_.busy_poll}}},
      {"notes",
       {std::string("cache_server_busy_poll=") + std::to_string(o_.busy_poll) +
            busy_note(o_.busy_poll),
        "viaduct at depth 32 measures the data path to the owner (the cache protocol on one "
        "transport channel, 32 requests in flight) without the client's failover layer: "
        "CacheClient is synchronous",
        "Redis runs without persistence (--save \"\" --appendonly no) while viaduct's writes are "
        "committed to SQLite before they are acknowledged: not the same durability, reported "
        "side by side",
        "sqlite at depth 32: 32 threads, each with its own connection; postgresql: depth 1 only",
        "workload C (reads only) at depth 1 only: the target's comparison"}},
      {"results", results_},
      {"viaduct_over_redis_get_p50_depth1", ratios},
      {"read_only_get_p50_depth1", read_only},
      {"target", "viaduct get p50 at depth 1 (reads only) no slower than Redis GET"}};
  if (met) doc["target_met"] = *met;
  if (!failure) {
    std::fprintf(stderr, "bench cache: %s\n", failure.to_string().c_str());
    doc["error"] = {{"exit_status", 1}, {"message", failure.to_string()}};
  }
  if (!o_.json_path.empty()) std::ofstream(o_.json_path) << doc.dump(2) << "\n";
  return failure ? 0 : 1;
}

}  // namespace

int run_cache_bench(const CacheBenchOptions& options) {
  Bench bench(options);
  return bench.run();
}

}  // namespace viaduct::bench
