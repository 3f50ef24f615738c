#include "tools/cache/local_cluster.hpp"

#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "cluster/member_auth.hpp"

namespace viaduct::tools {

Result<std::unique_ptr<LocalCluster>> LocalCluster::create(const LocalClusterOptions& options) {
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  c->options_ = options;
  c->key_path_ = options.dir + "/cluster.key";
  c->config_path_ = options.dir + "/cluster.toml";
  c->database_ =
      options.database.empty() ? "sqlite:" + options.dir + "/cache.db" : options.database;
  std::remove(c->key_path_.c_str());
  if (Status s = cluster::ClusterKey::generate(c->key_path_); !s) return s;
  std::ostringstream toml;
  toml << "[cluster]\nkey_file = \"" << c->key_path_ << "\"\n";
  if (!options.tunables.empty()) {
    toml << "[tunables]\n";
    for (const auto& [name, value] : options.tunables) toml << name << " = " << value << "\n";
  }
  toml << "[cache]\ndatabase = \"" << c->database_ << "\"\n";
  toml << "[cache.master]\nid = \"master\"\ncontrol = \"" << c->host_for("master") << ":"
       << options.base_port << "\"\n";
  std::uint32_t index = 0;
  for (std::uint32_t g = 1; g <= options.groups; ++g) {
    toml << "[[cache.group]]\nname = \"g" << g << "\"\n";
    for (std::uint32_t k = 0; k < options.servers_per_group; ++k, ++index) {
      std::string id = "s" + std::to_string(index + 1);
      c->ids_.push_back(id);
      int port = options.base_port + 2 + 2 * static_cast<int>(index);
      const std::string& host = c->host_for(id);
      toml << "[[cache.group.server]]\nid = \"" << id << "\"\nlisten = \"" << options.provider
           << "://" << host << ":" << port << "\"\ncontrol = \"" << host << ":" << port + 1
           << "\"\ntypes = [";
      for (const auto& type : c->types_of(id)) toml << "\"" << type << "\", ";
      toml << "]\n";
      if (auto own = options.server_tunables.find(id); own != options.server_tunables.end()) {
        toml << "[cache.group.server.tunables]\n";
        for (const auto& [name, value] : own->second) toml << name << " = " << value << "\n";
      }
    }
  }
  std::ofstream out(c->config_path_);
  out << toml.str();
  if (!out.good()) return Status(Code::kInvalidArgument, c->config_path_ + ": cannot write");
  return c;
}

Result<cluster::cache::CacheClientOptions> LocalCluster::client_options(
    const std::string& name) const {
  auto key = cluster::ClusterKey::load(key_path_);
  if (!key) return key.status();
  cluster::cache::CacheClientOptions options;
  options.master_control = host_for("master") + ":" + std::to_string(options_.base_port);
  options.master_id = "master";
  options.master_key = key->service_public_key(cluster::cache::master_key_name("master"));
  options.client_key = key->derive("clients");
  options.name = name;
  return options;
}

LocalCluster::~LocalCluster() {
  stop_ = true;
  if (drainer_.joinable()) drainer_.join();
}

void LocalCluster::drain_loop() {
  while (!stop_.load()) {
    {
      std::lock_guard lock(mutex_);
      for (auto& [id, p] : processes_) {
        if (p) (void)p->output();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<std::string> LocalCluster::server_ids() const {
  return ids_;
}

std::vector<std::string> LocalCluster::types_of(const std::string& id) const {
  std::vector<std::string> types;
  for (std::uint32_t t = 0; t < options_.types_per_server; ++t) {
    types.push_back("t" + id.substr(1) + static_cast<char>('a' + t));
  }
  return types;
}

const std::string& LocalCluster::host_for(const std::string& id) const {
  auto it = options_.host_of.find(id);
  return it == options_.host_of.end() ? options_.host : it->second;
}

std::vector<std::string> LocalCluster::argv_for(const std::string& id) const {
  std::vector<std::string> argv;
  if (auto it = options_.prefix_of.find(id); it != options_.prefix_of.end()) argv = it->second;
  std::vector<std::string> command =
      id == "master" ? std::vector<std::string>{options_.tool, "master", "--config", config_path_}
                     : std::vector<std::string>{options_.tool, "cache-server", "--config",
                                                config_path_,  "--id",         id};
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

Status LocalCluster::launch(const std::string& id, const std::string& ready, int timeout_ms) {
  {
    std::lock_guard lock(mutex_);
    if (!drainer_.joinable()) drainer_ = std::thread([this] { drain_loop(); });
    auto& p = processes_[id];
    if (p) finished_output_.push_back(p->output());
    p = std::make_unique<bench::ChildProcess>(argv_for(id), options_.dir + "/" + id + ".err");
  }
  return ready.empty() ? Status::ok() : wait_ready(id, ready, timeout_ms);
}

// Waits in slices, so that the other pipes keep being read meanwhile.
Status LocalCluster::wait_ready(const std::string& id, const std::string& ready, int timeout_ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    {
      std::lock_guard lock(mutex_);
      auto& p = processes_[id];
      const std::string& out = p->output();
      if (out.find(ready) != std::string::npos) return Status::ok();
      if (p->wait_exit(0).has_value() || std::chrono::steady_clock::now() > end) {
        return Status(Code::kTimeout, id + " did not print '" + ready + "' (see " + options_.dir +
                                          "/" + id + ".err): " + out);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Status LocalCluster::start_master() {
  return launch("master", "master master control", 10000);
}

Status LocalCluster::start_server(const std::string& id, int timeout_ms) {
  return launch(id, "lease held", timeout_ms);
}

Status LocalCluster::start(int timeout_ms) {
  if (Status s = start_master(); !s) return s;
  for (const auto& id : ids_) {
    if (Status s = launch(id, "", 0); !s) return s;
  }
  for (const auto& id : ids_) {
    if (Status s = wait_ready(id, "lease held", timeout_ms); !s) return s;
  }
  return Status::ok();
}

bench::ChildProcess* LocalCluster::process(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = processes_.find(id);
  return it == processes_.end() ? nullptr : it->second.get();
}

std::string LocalCluster::output_of(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = processes_.find(id);
  return it != processes_.end() && it->second ? it->second->output() : std::string();
}

void LocalCluster::kill(const std::string& id) {
  std::lock_guard lock(mutex_);
  if (auto it = processes_.find(id); it != processes_.end() && it->second) {
    it->second->kill_hard();
  }
}

void LocalCluster::freeze(const std::string& id) {
  if (auto* p = process(id)) p->signal(SIGSTOP);
}

void LocalCluster::thaw(const std::string& id) {
  if (auto* p = process(id)) p->signal(SIGCONT);
}

bool LocalCluster::alive(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = processes_.find(id);
  return it != processes_.end() && it->second && !it->second->wait_exit(0).has_value();
}

std::vector<std::string> LocalCluster::lines() {
  std::vector<std::string> all;
  auto split = [&all](const std::string& text) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) all.push_back(line);
  };
  std::lock_guard lock(mutex_);
  for (const auto& text : finished_output_) split(text);
  for (auto& [id, p] : processes_) {
    if (p) split(p->output());
  }
  return all;
}

}  // namespace viaduct::tools
