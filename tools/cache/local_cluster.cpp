#include "tools/cache/local_cluster.hpp"

#include <signal.h>

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
  toml << "[cache.master]\nid = \"master\"\ncontrol = \"" << options.host << ":"
       << options.base_port << "\"\n";
  std::uint32_t index = 0;
  for (std::uint32_t g = 1; g <= options.groups; ++g) {
    toml << "[[cache.group]]\nname = \"g" << g << "\"\n";
    for (std::uint32_t k = 0; k < options.servers_per_group; ++k, ++index) {
      std::string id = "s" + std::to_string(index + 1);
      c->ids_.push_back(id);
      int port = options.base_port + 2 + 2 * static_cast<int>(index);
      toml << "[[cache.group.server]]\nid = \"" << id << "\"\nlisten = \"" << options.provider
           << "://" << options.host << ":" << port << "\"\ncontrol = \"" << options.host << ":"
           << port + 1 << "\"\ntypes = [";
      for (const auto& type : c->types_of(id)) toml << "\"" << type << "\", ";
      toml << "]\n";
    }
  }
  std::ofstream out(c->config_path_);
  out << toml.str();
  if (!out.good()) return Status(Code::kInvalidArgument, c->config_path_ + ": cannot write");
  return c;
}

LocalCluster::~LocalCluster() = default;

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

std::vector<std::string> LocalCluster::argv_for(const std::string& id) const {
  if (id == "master") return {options_.tool, "master", "--config", config_path_};
  return {options_.tool, "cache-server", "--config", config_path_, "--id", id};
}

Status LocalCluster::start_master() {
  auto& p = processes_["master"];
  if (p) finished_output_.push_back(p->output());
  p = std::make_unique<bench::ChildProcess>(argv_for("master"), options_.dir + "/master.err");
  if (!p->wait_for("master master control", 10000)) {
    return Status(Code::kTimeout, "the master did not start: " + p->output());
  }
  return Status::ok();
}

Status LocalCluster::start_server(const std::string& id, int timeout_ms) {
  auto& p = processes_[id];
  if (p) finished_output_.push_back(p->output());
  p = std::make_unique<bench::ChildProcess>(argv_for(id), options_.dir + "/" + id + ".err");
  if (!p->wait_for("lease held", timeout_ms)) {
    return Status(Code::kTimeout, id + " did not get its lease: " + p->output());
  }
  return Status::ok();
}

Status LocalCluster::start(int timeout_ms) {
  if (Status s = start_master(); !s) return s;
  for (const auto& id : ids_) {
    processes_[id] =
        std::make_unique<bench::ChildProcess>(argv_for(id), options_.dir + "/" + id + ".err");
  }
  for (const auto& id : ids_) {
    if (!processes_[id]->wait_for("lease held", timeout_ms)) {
      return Status(Code::kTimeout, id + " did not get its lease: " + processes_[id]->output());
    }
  }
  return Status::ok();
}

bench::ChildProcess* LocalCluster::process(const std::string& id) {
  auto it = processes_.find(id);
  return it == processes_.end() ? nullptr : it->second.get();
}

void LocalCluster::kill(const std::string& id) {
  if (auto* p = process(id)) p->kill_hard();
}

void LocalCluster::freeze(const std::string& id) {
  if (auto* p = process(id)) p->signal(SIGSTOP);
}

void LocalCluster::thaw(const std::string& id) {
  if (auto* p = process(id)) p->signal(SIGCONT);
}

bool LocalCluster::alive(const std::string& id) {
  auto* p = process(id);
  return p != nullptr && !p->wait_exit(0).has_value();
}

std::vector<std::string> LocalCluster::lines() {
  std::vector<std::string> all;
  auto split = [&all](const std::string& text) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) all.push_back(line);
  };
  for (const auto& text : finished_output_) split(text);
  for (auto& [id, p] : processes_) {
    if (p) split(p->output());
  }
  return all;
}

}  // namespace viaduct::tools
