#include "tools/bench/cache_lab.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cluster/member_auth.hpp"
#include "transport/clock.hpp"

namespace viaduct::bench {

namespace cc = viaduct::cluster::cache;

std::int64_t at_ns_of(std::string_view line) {
  auto a = line.find(" at-ns ");
  if (a == std::string_view::npos) return 0;
  return std::strtoll(std::string(line.substr(a + 7, 24)).c_str(), nullptr, 10);
}

std::vector<TimedLine> timed_lines(const std::string& text, std::string_view prefix) {
  std::vector<TimedLine> found;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(prefix)) found.push_back({at_ns_of(line), line});
  }
  return found;
}

nlohmann::json summary_json(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  auto rank = [&values](double q) {
    if (values.empty()) return 0.0;
    auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
    return values[std::clamp<std::size_t>(i, 1, values.size()) - 1];
  };
  return {{"p50", rank(0.5)},
          {"p99", rank(0.99)},
          {"max", values.empty() ? 0.0 : values.back()},
          {"all", values}};
}

void plot_with(const std::string& tool, const std::string& script, const std::string& json_path,
               const std::string& png_path) {
  std::string path =
      std::filesystem::path(tool).parent_path().string() + "/../share/viaduct/" + script;
  if (access(path.c_str(), X_OK) != 0) path = std::string(VIADUCT_SOURCE_DIR "/bench/") + script;
  std::string cmd = "'" + path + "' '" + json_path + "' '" + png_path + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::cerr << "plot failed (" << cmd << "; needs jq and gnuplot-nox)\n";
  }
}

Result<std::unique_ptr<CacheLab>> CacheLab::start(const CacheLabOptions& options) {
  std::unique_ptr<CacheLab> lab(new CacheLab());
  char tmpl[] = "/tmp/viaduct-cache-lab-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Status(Code::kInvalidArgument, "mkdtemp failed");
  lab->dir_ = tmpl;
  tools::LocalClusterOptions co;
  co.tool = options.tool;
  co.dir = lab->dir_;
  co.base_port = static_cast<std::uint16_t>(options.base_port);
  co.tunables = options.tunables;
  co.host_of = options.host_of;
  co.prefix_of = options.prefix_of;
  auto cluster = tools::LocalCluster::create(co);
  if (!cluster) return cluster.status();
  lab->cluster_ = std::move(cluster.value());
  if (Status s = lab->cluster_->start(); !s) {
    lab->keep_dir();
    return s;
  }
  auto client_options = lab->cluster_->client_options("bench");
  if (!client_options) return client_options.status();
  auto client = cc::CacheClient::open(client_options.value());
  if (!client) return client.status();
  lab->client_ = std::move(client.value());
  CacheLab* raw = lab.get();
  lab->client_->on_event = [raw](std::string_view what, std::string_view server) {
    std::int64_t now = steady_now_ns();
    std::lock_guard lock(raw->mutex_);
    raw->events_.push_back({now, std::string(what), std::string(server)});
  };
  tools::CacheWorkloadOptions wo = options.workload;
  wo.seconds = 1e9;
  wo.operations = 0;
  wo.on_operation = [raw](const tools::CacheOperation& op) {
    std::lock_guard lock(raw->mutex_);
    raw->operations_.push_back({op.at_ns, op.latency_ns, op.write, op.type, op.key});
  };
  lab->workload_ = std::make_unique<tools::CacheWorkload>(*lab->client_, wo);
  lab->load_ = std::thread([raw] { raw->workload_->run(raw->stop_); });
  return lab;
}

CacheLab::~CacheLab() {
  stop_ = true;
  if (load_.joinable()) load_.join();
  workload_.reset();
  client_.reset();
  cluster_.reset();  // kills and reaps every daemon
  if (!keep_dir_ && !dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::optional<std::int64_t> CacheLab::wait_master(const std::string& prefix, std::int64_t since,
                                                  int timeout_ms) {
  std::int64_t end = steady_now_ns() + timeout_ms * 1'000'000LL;
  for (;;) {
    for (const auto& line : timed_lines(cluster_->output_of("master"), prefix)) {
      if (line.at_ns >= since) return line.at_ns;
    }
    if (steady_now_ns() > end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::optional<std::int64_t> CacheLab::wait_client(const std::string& what,
                                                  const std::string& server, std::int64_t since,
                                                  int timeout_ms) {
  std::int64_t end = steady_now_ns() + timeout_ms * 1'000'000LL;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      for (const auto& e : events_) {
        if (e.at_ns >= since && e.what == what && e.server == server) return e.at_ns;
      }
    }
    if (steady_now_ns() > end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::vector<CacheLab::Operation> CacheLab::operations(std::int64_t from_ns, std::int64_t to_ns) {
  std::lock_guard lock(mutex_);
  std::vector<Operation> found;
  for (const auto& op : operations_) {
    if (op.at_ns >= from_ns && op.at_ns <= to_ns) found.push_back(op);
  }
  return found;
}

std::uint64_t CacheLab::operation_count() {
  std::lock_guard lock(mutex_);
  return operations_.size();
}

std::string CacheLab::describe_since(std::int64_t since) {
  std::ostringstream out;
  {
    for (const auto& line : timed_lines(cluster_->output_of("master"), "master ")) {
      if (line.at_ns >= since) out << "  " << line.text << "\n";
    }
  }
  std::lock_guard lock(mutex_);
  for (const auto& e : events_) {
    if (e.at_ns >= since) {
      out << "  client " << e.what << " " << e.server << " at-ns " << e.at_ns << "\n";
    }
  }
  out << "  operations: " << operations_.size() << ", the last completed at-ns "
      << (operations_.empty() ? 0 : operations_.back().at_ns) << " (now " << steady_now_ns()
      << ")\n";
  return out.str();
}

const tools::CacheWorkloadReport& CacheLab::stop_and_verify() {
  stop_ = true;
  if (load_.joinable()) load_.join();
  workload_->verify(cluster_->database());
  return workload_->report();
}

const cc::CacheClientStats& CacheLab::client_stats() const {
  return client_->stats();
}

}  // namespace viaduct::bench
