// `viaduct master`, `viaduct cache-server` and `viaduct cache get|put|del|map`: the cache
// cluster's daemons and client, each run from the configuration file ([cache], see
// tools/config/config_file.hpp).
#pragma once

#include <atomic>
#include <string>

#include <CLI/CLI.hpp>

#include "tools/config/config_file.hpp"

namespace viaduct::tools {

struct CacheCommands {
  CLI::App* master = nullptr;
  CLI::App* server = nullptr;
  CLI::App* cache = nullptr;
  CLI::App* get = nullptr;
  CLI::App* put = nullptr;
  CLI::App* del = nullptr;
  CLI::App* map = nullptr;
  CLI::App* key_client = nullptr;
  CLI::App* load = nullptr;
  CLI::App* demo = nullptr;
  CLI::App* liar = nullptr;
  int liar_every_ms = 5;
  std::string png, json_path;
  std::uint16_t demo_base_port = 26600;
  std::string tool;  // this executable (the demo starts its daemons with it)
  double seconds = 5;
  std::uint64_t seed = 1;
  std::uint32_t write_percent = 30;
  std::uint32_t keys = 64;
  std::string samples_path;  // load: one line per operation (ns since start, latency us, w)
  std::string config_path;
  std::string id;
  std::string type, key, value;
  std::string cluster_key_file, out_file;
  bool json = false;
  [[nodiscard]] bool parsed() const;
};

void add_cache_commands(CLI::App& app, CacheCommands& commands);
// `viaduct bench cache-liar`, under `bench`.
void add_cache_bench_commands(CLI::App& bench, CacheCommands& commands);
// The data server's entry, to apply its tunables (nullptr for the other commands); an error
// when --id names no data server.
Result<const config::CacheServerEntry*> cache_instance(const config::ConfigFile& file,
                                                       const CacheCommands& commands);
int run_cache_command(const CacheCommands& commands, const config::ConfigFile* file,
                      const std::atomic<bool>& stop);

}  // namespace viaduct::tools
