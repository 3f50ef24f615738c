#include "tools/config/config_file.hpp"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "failover/udp_socket.hpp"
#include "transport/address.hpp"
#include "transport/tunable.hpp"

namespace viaduct::config {
namespace {

// "FILE:LINE:COLUMN: " of a node.
std::string where(const std::string& path, const toml::node& node) {
  const auto& at = node.source().begin;
  return path + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": ";
}

// Collects the first error; every check below is a no-op once one was found.
class Checker {
 public:
  explicit Checker(std::string path) : path_(std::move(path)) {}
  [[nodiscard]] bool failed() const { return !error_.empty(); }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] const std::string& path() const { return path_; }

  void fail(const toml::node& node, const std::string& what) {
    if (error_.empty()) error_ = where(path_, node) + what;
  }
  // Every key of `table` must be one of `allowed`.
  void only_keys(const toml::table& table, std::initializer_list<std::string_view> allowed,
                 const std::string& context) {
    for (const auto& [key, value] : table) {
      bool known = false;
      for (auto name : allowed) known = known || key.str() == name;
      if (!known) {
        std::string list;
        for (auto name : allowed) list += (list.empty() ? "" : ", ") + std::string(name);
        fail(value, "unknown key '" + std::string(key.str()) + "' in " + context +
                        " (known: " + list + ")");
      }
    }
  }
  // A string at `key`; `required`: missing is an error.
  std::string string_at(const toml::table& table, std::string_view key, const std::string& context,
                        bool required, const toml::node& owner) {
    const toml::node* node = table.get(key);
    if (node == nullptr) {
      if (required) fail(owner, context + " needs '" + std::string(key) + "'");
      return {};
    }
    if (!node->is_string()) {
      fail(*node, "'" + std::string(key) + "' in " + context + " must be a string");
      return {};
    }
    return node->value<std::string>().value_or("");
  }
  // Tunable name = integer, each checked against the tunable's range.
  void tunables(const toml::node& node, std::map<std::string, std::int64_t>* out,
                const std::string& context) {
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      fail(node, context + " must be a table of tunable = integer");
      return;
    }
    for (const auto& [key, value] : *table) {
      std::string name(key.str());
      Tunable* tunable = Tunable::find(name);
      if (tunable == nullptr) {
        fail(value,
             "unknown tunable '" + name + "' in " + context + " (`viaduct info` lists them)");
        return;
      }
      if (!value.is_integer()) {
        fail(value, "tunable '" + name + "' must be an integer");
        return;
      }
      std::int64_t v = value.value<std::int64_t>().value_or(0);
      if (v < tunable->min_value() || v > tunable->max_value()) {
        fail(value, "tunable '" + name + "' must be in [" + std::to_string(tunable->min_value()) +
                        ", " + std::to_string(tunable->max_value()) + "], got " +
                        std::to_string(v));
        return;
      }
      (*out)[name] = v;
    }
  }

 private:
  std::string path_;
  std::string error_;
};

void read_server(Checker& check, const toml::table& table, ServerEntry* server,
                 const std::string& service_name) {
  std::string context = "[[service.server]] of " + service_name;
  check.only_keys(table, {"id", "role", "listen", "lookup", "epoch", "tunables"}, context);
  server->id = check.string_at(table, "id", context, true, table);
  std::string role = check.string_at(table, "role", context, true, table);
  if (!check.failed() && role != "active" && role != "passive") {
    check.fail(*table.get("role"), "role must be \"active\" or \"passive\", got \"" + role + "\"");
  }
  server->active = role == "active";
  server->listen = check.string_at(table, "listen", context, true, table);
  if (!check.failed()) {
    if (auto address = transport::Address::parse(server->listen); !address) {
      check.fail(*table.get("listen"), "listen: " + address.status().message());
    }
  }
  server->lookup = check.string_at(table, "lookup", context, false, table);
  if (server->lookup.empty()) server->lookup = "off";
  if (!check.failed() && server->lookup != "off") {
    if (auto endpoint = failover::UdpEndpoint::parse(server->lookup); !endpoint) {
      check.fail(*table.get("lookup"), "lookup: " + endpoint.status().message());
    }
  }
  if (const toml::node* epoch = table.get("epoch")) {
    if (!epoch->is_integer() || epoch->value<std::int64_t>().value_or(0) < 1) {
      check.fail(*epoch, "epoch must be an integer >= 1");
    } else {
      server->epoch = static_cast<std::uint64_t>(epoch->value<std::int64_t>().value_or(1));
    }
  }
  if (const toml::node* tunables = table.get("tunables")) {
    check.tunables(*tunables, &server->tunables, "[service.server.tunables] of " + server->id);
  }
}

void read_service(Checker& check, const toml::table& table, ServiceEntry* service) {
  check.only_keys(table, {"name", "kind", "server"}, "[[service]]");
  service->name = check.string_at(table, "name", "[[service]]", true, table);
  if (!check.failed() && (service->name.empty() || service->name.size() > 31)) {
    check.fail(*table.get("name"), "service name must be 1..31 bytes");
  }
  std::string kind = check.string_at(table, "kind", "[[service]]", false, table);
  if (!kind.empty()) service->kind = kind;
  if (!check.failed() && service->kind != "echo" && service->kind != "counter") {
    check.fail(*table.get("kind"), "kind must be \"echo\" or \"counter\", got \"" + kind + "\"");
  }
  const toml::node* servers = table.get("server");
  const toml::array* list = servers != nullptr ? servers->as_array() : nullptr;
  if (!check.failed() && (list == nullptr || list->empty() || list->size() > 2)) {
    check.fail(servers != nullptr ? *servers : static_cast<const toml::node&>(table),
               "service " + service->name + " needs one or two [[service.server]] entries");
    return;
  }
  if (check.failed()) return;
  for (const toml::node& node : *list) {
    const toml::table* server_table = node.as_table();
    if (server_table == nullptr) {
      check.fail(node, "[[service.server]] entries must be tables");
      return;
    }
    service->servers.emplace_back();
    read_server(check, *server_table, &service->servers.back(), service->name);
  }
  if (check.failed()) return;
  int actives = 0;
  for (const auto& server : service->servers) actives += server.active ? 1 : 0;
  if (service->servers.size() == 2 && actives != 1) {
    check.fail(table, "service " + service->name +
                          ": a pair needs exactly one active server, has " +
                          std::to_string(actives));
  }
}

void read_cache_server(Checker& check, const toml::table& table, CacheServerEntry* server,
                       const std::string& group) {
  std::string context = "[[cache.group.server]] of group " + group;
  check.only_keys(table, {"id", "listen", "control", "types", "tunables"}, context);
  server->group = group;
  server->id = check.string_at(table, "id", context, true, table);
  if (!check.failed() && (server->id.empty() || server->id.size() > 29)) {
    check.fail(*table.get("id"), "id: 1 to 29 bytes");
  }
  server->listen = check.string_at(table, "listen", context, true, table);
  if (!check.failed()) {
    if (auto address = transport::Address::parse(server->listen); !address) {
      check.fail(*table.get("listen"), "listen: " + address.status().message());
    }
  }
  server->control = check.string_at(table, "control", context, true, table);
  if (!check.failed()) {
    if (auto endpoint = failover::UdpEndpoint::parse(server->control); !endpoint) {
      check.fail(*table.get("control"), "control: " + endpoint.status().message());
    }
  }
  const toml::node* types = table.get("types");
  const toml::array* list = types != nullptr ? types->as_array() : nullptr;
  if (!check.failed() && (list == nullptr || list->empty())) {
    check.fail(types != nullptr ? *types : static_cast<const toml::node&>(table),
               context + " needs 'types', a non-empty list of type names");
    return;
  }
  if (check.failed()) return;
  for (const toml::node& node : *list) {
    if (!node.is_string() || node.value<std::string>()->empty() ||
        node.value<std::string>()->size() > 63) {
      check.fail(node, "a type is a string of 1 to 63 bytes");
      return;
    }
    server->types.push_back(*node.value<std::string>());
  }
  if (const toml::node* tunables = table.get("tunables")) {
    check.tunables(*tunables, &server->tunables, "[cache.group.server.tunables] of " + server->id);
  }
}

void read_cache(Checker& check, const toml::node& node, CacheEntry* cache) {
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    check.fail(node, "[cache] must be a table");
    return;
  }
  check.only_keys(*table, {"database", "master", "group"}, "[cache]");
  cache->database = check.string_at(*table, "database", "[cache]", true, *table);
  if (!check.failed() && cache->database.rfind("sqlite:", 0) != 0 &&
      cache->database.rfind("postgresql://", 0) != 0 &&
      cache->database.rfind("postgres://", 0) != 0) {
    check.fail(*table->get("database"),
               "database must be \"sqlite:PATH\" or \"postgresql://...\", got \"" +
                   cache->database + "\"");
  }
  const toml::node* master = table->get("master");
  if (!check.failed() && (master == nullptr || !master->is_table())) {
    check.fail(master != nullptr ? *master : node, "[cache] needs a [cache.master] table");
    return;
  }
  if (check.failed()) return;
  const toml::table& m = *master->as_table();
  check.only_keys(m, {"id", "control"}, "[cache.master]");
  cache->master_id = check.string_at(m, "id", "[cache.master]", true, m);
  cache->master_control = check.string_at(m, "control", "[cache.master]", true, m);
  if (!check.failed()) {
    if (auto endpoint = failover::UdpEndpoint::parse(cache->master_control); !endpoint) {
      check.fail(*m.get("control"), "control: " + endpoint.status().message());
    }
  }
  const toml::node* groups = table->get("group");
  const toml::array* list = groups != nullptr ? groups->as_array() : nullptr;
  if (!check.failed() && (list == nullptr || list->empty())) {
    check.fail(groups != nullptr ? *groups : node, "[cache] needs [[cache.group]] entries");
    return;
  }
  if (check.failed()) return;
  for (const toml::node& g : *list) {
    const toml::table* group = g.as_table();
    if (group == nullptr) {
      check.fail(g, "[[cache.group]] entries must be tables");
      return;
    }
    check.only_keys(*group, {"name", "server"}, "[[cache.group]]");
    std::string name = check.string_at(*group, "name", "[[cache.group]]", true, *group);
    const toml::node* servers = group->get("server");
    const toml::array* members = servers != nullptr ? servers->as_array() : nullptr;
    if (!check.failed() && (members == nullptr || members->size() < 2)) {
      check.fail(servers != nullptr ? *servers : g,
                 "group " + name + " needs two or more [[cache.group.server]] entries");
      return;
    }
    if (check.failed()) return;
    for (const toml::node& s : *members) {
      if (s.as_table() == nullptr) {
        check.fail(s, "[[cache.group.server]] entries must be tables");
        return;
      }
      cache->servers.emplace_back();
      read_cache_server(check, *s.as_table(), &cache->servers.back(), name);
      if (check.failed()) return;
    }
  }
}

}  // namespace

const CacheServerEntry* CacheEntry::server(const std::string& id) const {
  for (const auto& s : servers) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

const ServiceEntry* ConfigFile::service(const std::string& name) const {
  for (const auto& s : services) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const ServerEntry* ConfigFile::server(const std::string& id,
                                      const ServiceEntry** service_of) const {
  for (const auto& s : services) {
    for (const auto& server : s.servers) {
      if (server.id == id) {
        if (service_of != nullptr) *service_of = &s;
        return &server;
      }
    }
  }
  return nullptr;
}

std::string ConfigFile::lookup_list(const ServiceEntry& service) {
  std::string list;
  for (const auto& server : service.servers) {
    if (server.lookup == "off") continue;
    list += (list.empty() ? "" : ",") + server.lookup;
  }
  return list;
}

Result<ConfigFile> parse(std::string_view text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    return Status(Code::kInvalidArgument, path + ":" + std::to_string(at.line) + ":" +
                                              std::to_string(at.column) + ": " +
                                              std::string(e.description()));
  }
  Checker check(path);
  ConfigFile file;
  file.path = path;
  check.only_keys(root, {"cluster", "tunables", "service", "cache"}, "the file");
  if (const toml::node* cluster = root.get("cluster")) {
    if (const toml::table* table = cluster->as_table()) {
      check.only_keys(*table, {"key_file"}, "[cluster]");
      file.key_file = check.string_at(*table, "key_file", "[cluster]", false, *table);
    } else {
      check.fail(*cluster, "[cluster] must be a table");
    }
  }
  if (const toml::node* tunables = root.get("tunables")) {
    check.tunables(*tunables, &file.tunables, "[tunables]");
  }
  if (const toml::node* services = root.get("service")) {
    const toml::array* list = services->as_array();
    if (list == nullptr) {
      check.fail(*services, "services are [[service]] entries");
    } else {
      for (const toml::node& node : *list) {
        if (check.failed()) break;
        const toml::table* table = node.as_table();
        if (table == nullptr) {
          check.fail(node, "[[service]] entries must be tables");
          break;
        }
        file.services.emplace_back();
        read_service(check, *table, &file.services.back());
      }
    }
  }
  if (const toml::node* cache = root.get("cache"); cache != nullptr && !check.failed()) {
    file.cache.emplace();
    read_cache(check, *cache, &*file.cache);
  }
  // Names and ids are unique: `--id` and `--name` must pick one entry.
  std::set<std::string> names, ids;
  if (file.cache && !check.failed()) {
    std::set<std::string> types;
    for (const auto& server : file.cache->servers) {
      if (!ids.insert(server.id).second) {
        return Status(Code::kInvalidArgument, path + ": server id '" + server.id + "' twice");
      }
      for (const auto& type : server.types) {
        if (!types.insert(type).second) {
          return Status(Code::kInvalidArgument, path + ": type '" + type + "' has two owners (" +
                                                    server.id + " and another)");
        }
      }
    }
    if (file.cache->servers.size() > 64) {
      return Status(Code::kInvalidArgument, path + ": at most 64 data servers");
    }
  }
  for (const auto& service : file.services) {
    if (check.failed()) break;
    if (!names.insert(service.name).second) {
      return Status(Code::kInvalidArgument, path + ": service '" + service.name + "' twice");
    }
    for (const auto& server : service.servers) {
      if (!ids.insert(server.id).second) {
        return Status(Code::kInvalidArgument, path + ": server id '" + server.id + "' twice");
      }
    }
  }
  if (check.failed()) return Status(Code::kInvalidArgument, check.error());
  // A relative key file is next to the configuration, wherever the daemon was started from.
  if (!file.key_file.empty() && std::filesystem::path(file.key_file).is_relative()) {
    file.key_file =
        (std::filesystem::path(path).parent_path() / file.key_file).lexically_normal().string();
  }
  if (file.cache && file.cache->database.rfind("sqlite:", 0) == 0) {
    std::string db = file.cache->database.substr(7);
    if (!db.empty() && std::filesystem::path(db).is_relative()) {
      file.cache->database =
          "sqlite:" + (std::filesystem::path(path).parent_path() / db).lexically_normal().string();
    }
  }
  return file;
}

Result<ConfigFile> load(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) return Status(Code::kInvalidArgument, path + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

Status apply_tunables(const ConfigFile& file, const ServerEntry* instance) {
  auto apply = [](const std::map<std::string, std::int64_t>& values) -> Status {
    for (const auto& [name, value] : values) {
      Tunable* tunable = Tunable::find(name);
      if (tunable == nullptr) return {Code::kInvalidArgument, "unknown tunable " + name};
      if (tunable->source() == "env") continue;  // the environment wins over the file
      VIADUCT_RETURN_IF_ERROR(tunable->set(value));
    }
    return Status::ok();
  };
  VIADUCT_RETURN_IF_ERROR(apply(file.tunables));
  if (instance != nullptr) VIADUCT_RETURN_IF_ERROR(apply(instance->tunables));
  return Status::ok();
}

Status apply_tunables(const ConfigFile& file, const CacheServerEntry* instance) {
  ServerEntry as_server;
  if (instance != nullptr) as_server.tunables = instance->tunables;
  return apply_tunables(file, instance != nullptr ? &as_server : nullptr);
}

}  // namespace viaduct::config
