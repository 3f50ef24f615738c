#include "tools/cache/cache_commands.hpp"

#include <iostream>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "cluster/cache/cache_client.hpp"
#include "cluster/cache/cache_server.hpp"
#include "cluster/cache/master.hpp"
#include "tools/sd_notify.hpp"
#include "transport/clock.hpp"

namespace viaduct::tools {

namespace cc = viaduct::cluster::cache;

bool CacheCommands::parsed() const {
  return master->parsed() || server->parsed() || cache->parsed() || key_client->parsed();
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
  for (CLI::App* sub : {c.get, c.put, c.del, c.map}) {
    sub->add_option("--config", c.config_path, "the configuration file")->required();
  }
  for (CLI::App* sub : {c.get, c.put, c.del}) {
    sub->add_option("type", c.type, "the record's type")->required();
    sub->add_option("key", c.key, "the record's key")->required();
  }
  c.put->add_option("value", c.value, "the value")->required();
  c.key_client = app.add_subcommand(
      "key-client", "write the cache clients' key (derived from the cluster secret) to FILE");
  c.key_client->add_option("--cluster-key", c.cluster_key_file, "the cluster secret")->required();
  c.key_client->add_option("file", c.out_file, "where to write it (must not exist)")->required();
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

int run_client(const CacheCommands& c, const config::ConfigFile& file,
               const cluster::ClusterKey& key) {
  cc::CacheClientOptions options;
  options.master_control = file.cache->master_control;
  options.master_id = file.cache->master_id;
  options.master_key = key.service_public_key(cc::master_key_name(file.cache->master_id));
  options.client_key = key.derive("clients");
  options.name = "viaduct-cache-cli";
  auto client = cc::CacheClient::open(options);
  if (!client) return failed(client.status());
  auto& cl = *client.value();
  nlohmann::json out;
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
  return run_client(c, *file, key.value());
}

}  // namespace viaduct::tools
