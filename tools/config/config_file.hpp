// The configuration file of the daemons and tools (TOML): the cluster's key, process-wide
// tunables, and the services with their servers — one file for the whole cluster, so that ten
// servers are one file instead of twenty hand-written command lines.
//
//   [cluster]
//   key_file = "/etc/viaduct/cluster.key"
//   [tunables]                          # every process started from this file
//   partner_takeover_after_ms = 30
//   [[service]]
//   name = "ORDERS"
//   kind = "counter"                    # what `viaduct serve` runs: echo | counter
//   [[service.server]]
//   id = "orders-a"                     # `viaduct serve --config FILE --id orders-a`
//   role = "active"
//   listen = "ofi+tcp://10.0.0.1:7400"
//   lookup = "10.0.0.1:7434"
//   [service.server.tunables]           # this instance only (over [tunables])
//   partner_realtime_priority = 0
//
// Unknown keys, values of the wrong type or out of range, duplicate names or ids and a pair
// without exactly one active are errors naming the key and its line: a misspelt setting must not
// silently fall back to a default.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "transport/status.hpp"

namespace viaduct::config {

struct ServerEntry {
  std::string id;
  bool active = false;
  std::uint64_t epoch = 1;
  std::string listen;                            // transport address
  std::string lookup;                            // UDP HOST:PORT, or "off"
  std::map<std::string, std::int64_t> tunables;  // this instance's, over the file's
};

struct ServiceEntry {
  std::string name;
  std::string kind = "echo";
  std::vector<ServerEntry> servers;  // one, or an active/passive pair
};

// The cache cluster ([cache]): the database, the master, the failover groups of data servers.
//   [cache]
//   database = "sqlite:cache.db"        # or "postgresql://HOST/DB"; relative to this file
//   [cache.master]
//   id = "master"
//   control = "127.0.0.1:7600"          # UDP: reports, leases, the map
//   [[cache.group]]
//   name = "g1"
//   [[cache.group.server]]
//   id = "s1"                           # `viaduct cache-server --config FILE --id s1`
//   listen = "ofi+tcp://127.0.0.1:7610"
//   control = "127.0.0.1:7611"
//   types = ["users", "orders"]
struct CacheServerEntry {
  std::string id;
  std::string group;
  std::string listen;
  std::string control;
  std::vector<std::string> types;
  std::map<std::string, std::int64_t> tunables;
};

struct CacheEntry {
  std::string database;
  std::string master_id;
  std::string master_control;
  std::vector<CacheServerEntry> servers;
  [[nodiscard]] const CacheServerEntry* server(const std::string& id) const;
};

struct ConfigFile {
  std::string path;
  std::string key_file;  // relative paths are taken from the file's directory
  std::map<std::string, std::int64_t> tunables;
  std::vector<ServiceEntry> services;
  std::optional<CacheEntry> cache;

  // The service named `name`, or nullptr.
  [[nodiscard]] const ServiceEntry* service(const std::string& name) const;
  // The server with this id and its service, or nullptr.
  [[nodiscard]] const ServerEntry* server(const std::string& id,
                                          const ServiceEntry** service_of = nullptr) const;
  // "HOST:PORT,HOST:PORT" of the lookup responders of `service` (those not "off").
  [[nodiscard]] static std::string lookup_list(const ServiceEntry& service);
};

// Reads and checks the file; errors are kInvalidArgument "FILE:LINE:COLUMN: what".
Result<ConfigFile> load(const std::string& path);
// The same from text (tests), `path` naming it in errors.
Result<ConfigFile> parse(std::string_view text, const std::string& path);

// Sets the file's tunables, then the instance's (an error names the tunable). A tunable set in
// the environment (VIADUCT_*) keeps that value; --set, applied after, overrides both.
Status apply_tunables(const ConfigFile& file, const ServerEntry* instance);
// The same for a data server of the cache cluster.
Status apply_tunables(const ConfigFile& file, const CacheServerEntry* instance);

}  // namespace viaduct::config
