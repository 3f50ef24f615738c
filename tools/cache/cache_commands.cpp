#include "tools/cache/cache_commands.hpp"

#include <iostream>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "cluster/cache/cache_client.hpp"
#include "cluster/cache/cache_server.hpp"
#include "cluster/cache/master.hpp"
#include "tools/cache/cache_workload.hpp"
#include "tools/cache/cluster_demo.hpp"
#include "tools/cache/liar_run.hpp"
#include "tools/sd_notify.hpp"
#include "transport/clock.hpp"

namespace viaduct::tools {

namespace cc = viaduct::cluster::cache;

bool CacheCommands::parsed() const {
  return master->parsed() || server->parsed() || cache->parsed() || key_client->parsed() ||
         demo->parsed() || (liar != nullptr && liar->parsed());
}

void add_cache_commands(CLI::App& app, CacheCommands& c) {
  c.master = app.add_subcommand("master", "run the cache cluster's master ([cache.master])");
  c.master->add_option("--config", c.config_path, "the configuration file")->required();
  c.server = app.add_subcommand("cache-server", "run a data server of the cache cluster");
  c.server->add_option("--config", c.config_path, "the configuration file")->required();
  c.server->add_option("--id", c.id, "the server's id in [[cache.group.server]]")->required();
  c.cache = app.add_subcommand("cache", "read and write records of the cache cluster");
  c.cache->require_subcommand(1);
  c.get = c.cache->add_subcommand("get", "read a record: prints found, version, value");
  c.put = c.cache->add_subcommand("put", "write a record: prints its new version");
  c.del = c.cache->add_subcommand("del", "delete a record: prints the tombstone's version");
  c.map = c.cache->add_subcommand("map", "print the master's cluster map");
  c.load = c.cache->add_subcommand(
      "load",
      "a checked workload: every read against the last acknowledged write, every key "
      "read back at the end (through the cluster and from the database); exit 1 if any "
      "error, stale read or lost write");
  c.load->add_option("--seconds", c.seconds, "how long")->capture_default_str();
  c.load->add_option("--seed", c.seed, "the operations' random seed")->capture_default_str();
  c.load->add_option("--write-percent", c.write_percent, "writes among the operations")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  c.load->add_option("--keys", c.keys, "keys per type")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  c.load->add_option("--samples", c.samples_path,
                     "write each operation's time and latency to this file (for plots)");
  for (CLI::App* sub : {c.get, c.put, c.del, c.map, c.load}) {
    sub->add_option("--config", c.config_path, "the configuration file")->required();
  }
  for (CLI::App* sub : {c.get, c.put, c.del}) {
    sub->add_option("type", c.type, "the record's type")->required();
    sub->add_option("key", c.key, "the record's key")->required();
  }
  c.put->add_option("value", c.value, "the value")->required();
  c.demo = app.add_subcommand(
      "demo",
      "the cache cluster at work: a master, two groups of two data servers, a checked "
      "load; a data server killed and restarted; the timeline and its plot");
  c.demo->add_option("--png", c.png, "draw the timeline here (gnuplot)");
  c.demo->add_option("--json", c.json_path, "the summary as JSON");
  c.demo
      ->add_option("--base-port", c.demo_base_port,
                   "the master's UDP port; the data servers take the 8 ports after it")
      ->capture_default_str();
  c.key_client = app.add_subcommand(
      "key-client", "write the cache clients' key (derived from the cluster secret) to FILE");
  c.key_client->add_option("--cluster-key", c.cluster_key_file, "the cluster secret")->required();
  c.key_client->add_option("file", c.out_file, "where to write it (must not exist)")->required();
}

void add_cache_bench_commands(CLI::App& bench, CacheCommands& c) {
  c.liar =
      bench.add_subcommand("cache-liar",
                           "a checked load on a local cache cluster while a client keeps reporting "
                           "healthy servers offline: 0 offline marks, 0 errors expected");
  c.liar->add_option("--seconds", c.seconds, "how long")->capture_default_str();
  c.liar->add_option("--every-ms", c.liar_every_ms, "one false report per period")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  c.liar->add_option("--base-port", c.demo_base_port, "the master's UDP port (8 more after it)");
  c.liar->add_option("--json", c.json_path, "the counts as JSON");
}

Result<const config::CacheServerEntry*> cache_instance(const config::ConfigFile& file,
                                                       const CacheCommands& c) {
  if (!c.server->parsed()) return static_cast<const config::CacheServerEntry*>(nullptr);
  if (!file.cache) return Status(Code::kInvalidArgument, file.path + ": no [cache] section");
  const config::CacheServerEntry* entry = file.cache->server(c.id);
  if (entry == nullptr) {
    return Status(Code::kInvalidArgument, file.path + ": no data server with id '" + c.id + "'");
  }
  return entry;
}

namespace {

cc::ClusterMap map_of(const config::CacheEntry& cache) {
  cc::ClusterMap map;
  for (const auto& s : cache.servers) {
    cc::MapServer server;
    server.id = s.id;
    server.group = s.group;
    server.listen = s.listen;
    server.control = s.control;
    server.types = s.types;
    map.servers.push_back(std::move(server));
  }
  return map;
}

int failed(const Status& s) {
  spdlog::error("{}", s.to_string());
  return 1;
}

int run_master(const config::ConfigFile& file, const cluster::ClusterKey& key,
               const std::atomic<bool>& stop) {
  cc::MasterConfig config{file.cache->master_id, file.cache->master_control, map_of(*file.cache),
                          &key};
  auto master = cc::Master::start(config);
  if (!master) return failed(master.status());
  // One line per event on stdout, flushed: the demo's timeline and the tests follow them.
  master.value()->on_event = [](const cc::MasterEvent& e) {
    std::cout << "master " << e.what << " " << e.server << " at-ns " << e.at_ns << " " << e.detail
              << std::endl;
  };
  std::cout << "master " << config.id << " control " << master.value()->control_address() << " map "
            << master.value()->map().epoch << std::endl;
  (void)sd_notify("READY=1");
  master.value()->run(stop);
  (void)sd_notify("STOPPING=1");
  return 0;
}

int run_server(const config::ConfigFile& file, const std::string& id,
               const cluster::ClusterKey& key, const std::atomic<bool>& stop) {
  cc::CacheServerConfig config{id,
                               map_of(*file.cache),
                               file.cache->master_id,
                               file.cache->master_control,
                               file.cache->database,
                               &key};
  auto server = cc::CacheServer::start(config);
  if (!server) return failed(server.status());
  server.value()->on_notice = [&id](const std::string& line) {
    std::cout << "cache-server " << id << " " << line << " at-ns " << steady_now_ns() << std::endl;
  };
  std::cout << "cache-server " << id << " serving " << server.value()->address() << std::endl;
  (void)sd_notify("READY=1");
  server.value()->run(stop);
  (void)sd_notify("STOPPING=1");
  return 0;
}

std::string text_of(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

int run_load(const CacheCommands& c, const config::ConfigFile& file, cc::CacheClient& client,
             const std::atomic<bool>& stop) {
  CacheWorkloadOptions options;
  options.seconds = c.seconds;
  options.seed = c.seed;
  options.write_percent = c.write_percent;
  options.keys_per_type = c.keys;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> samples(nullptr, &std::fclose);
  std::int64_t start = steady_now_ns();
  if (!c.samples_path.empty()) {
    samples.reset(std::fopen(c.samples_path.c_str(), "w"));
    if (!samples) return failed(Status(Code::kInvalidArgument, c.samples_path + ": cannot write"));
    options.on_operation = [&samples, start](const CacheOperation& op) {
      std::fprintf(samples.get(), "%.3f %.1f %d\n", static_cast<double>(op.at_ns - start) / 1e6,
                   static_cast<double>(op.latency_ns) / 1e3, op.write ? 1 : 0);
    };
  }
  CacheWorkload workload(client, options);
  std::cout << "client load-start at-ns " << start << std::endl;
  workload.run(stop);
  std::cout << "client load-end at-ns " << steady_now_ns() << std::endl;
  workload.verify(file.cache->database);
  const auto& r = workload.report();
  nlohmann::json out = {{"operations", r.operations},
                        {"reads", r.reads},
                        {"writes", r.writes},
                        {"errors", r.errors},
                        {"stale_reads", r.stale_reads},
                        {"wrong_values", r.wrong_values},
                        {"lost_writes", r.lost_writes},
                        {"lost_in_database", r.lost_in_database},
                        {"p50_us", static_cast<double>(r.latency.quantile(0.5)) / 1e3},
                        {"p99_us", static_cast<double>(r.latency.quantile(0.99)) / 1e3},
                        {"max_ms", static_cast<double>(r.max_latency_ns) / 1e6},
                        {"failover_entered", client.stats().failover_entered},
                        {"failover_left", client.stats().failover_left},
                        {"held", r.held()}};
  if (!r.first_error.empty()) out["first_error"] = r.first_error;
  std::cout << out.dump() << std::endl;
  return r.held() ? 0 : 1;
}

int run_client(const CacheCommands& c, const config::ConfigFile& file,
               const cluster::ClusterKey& key, const std::atomic<bool>& stop) {
  cc::CacheClientOptions options;
  options.master_control = file.cache->master_control;
  options.master_id = file.cache->master_id;
  options.master_key = key.service_public_key(cc::master_key_name(file.cache->master_id));
  options.client_key = key.derive("clients");
  options.name = "viaduct-cache-cli";
  auto client = cc::CacheClient::open(options);
  if (!client) return failed(client.status());
  auto& cl = *client.value();
  // Events on stdout, one line each with the time, as the daemons print theirs: the demo merges
  // them into one timeline.
  cl.on_event = [](std::string_view what, std::string_view server) {
    if (what.rfind("map ", 0) == 0) return;
    std::cout << "client " << what << " " << server << " at-ns " << steady_now_ns() << std::endl;
  };
  nlohmann::json out;
  if (c.load->parsed()) return run_load(c, file, cl, stop);
  auto key_bytes = cc::as_bytes(c.key);
  if (c.get->parsed()) {
    auto r = cl.get(c.type, key_bytes);
    if (!r) return failed(r.status());
    out = {{"found", r->found}, {"version", r->version}, {"value", text_of(r->value)}};
  } else if (c.put->parsed()) {
    auto r = cl.put(c.type, key_bytes, cc::as_bytes(c.value));
    if (!r) return failed(r.status());
    out = {{"version", r.value()}};
  } else if (c.del->parsed()) {
    auto r = cl.remove(c.type, key_bytes);
    if (!r) return failed(r.status());
    out = {{"version", r.value()}};
  } else {
    out["epoch"] = cl.map().epoch;
    for (const auto& s : cl.map().servers) {
      out["servers"].push_back({{"id", s.id},
                                {"group", s.group},
                                {"listen", s.listen},
                                {"state", std::string(cc::server_state_name(s.state))},
                                {"generation", s.generation},
                                {"types", s.types}});
    }
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int run_cache_command(const CacheCommands& c, const config::ConfigFile* file,
                      const std::atomic<bool>& stop) {
  if (c.demo->parsed()) {
    ClusterDemoOptions options;
    options.tool = c.tool;
    options.png = c.png;
    options.json = c.json_path;
    options.base_port = c.demo_base_port;
    return run_cluster_demo(options);
  }
  if (c.liar != nullptr && c.liar->parsed()) {
    LiarRunOptions options;
    options.tool = c.tool;
    options.seconds = c.seconds;
    options.report_every_ms = c.liar_every_ms;
    options.base_port = c.demo_base_port;
    options.json = c.json_path;
    return run_liar_run(options);
  }
  if (c.key_client->parsed()) {
    auto key = cluster::ClusterKey::load(c.cluster_key_file);
    if (!key) return failed(key.status());
    if (Status s = key->derive("clients").save(c.out_file); !s) return failed(s);
    return 0;
  }
  if (file == nullptr || !file->cache) {
    return failed(Status(Code::kInvalidArgument,
                         (file ? file->path : std::string("--config")) + ": no [cache] section"));
  }
  if (file->key_file.empty()) {
    return failed(Status(Code::kInvalidArgument,
                         file->path + ": the cache cluster needs [cluster] key_file"));
  }
  auto key = cluster::ClusterKey::load(file->key_file);
  if (!key) return failed(key.status());
  if (c.master->parsed()) return run_master(*file, key.value(), stop);
  if (c.server->parsed()) return run_server(*file, c.id, key.value(), stop);
  return run_client(c, *file, key.value(), stop);
}

}  // namespace viaduct::tools
