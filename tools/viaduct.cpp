// `viaduct`: one command, subcommands. Thin: parse arguments, call the library.
#include <sys/mman.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <viaduct/version.hpp>

#include "cluster/service_server.hpp"
#include "failover/lookup_client.hpp"
#include "tools/bench/cache_bench.hpp"
#include "tools/bench/cache_fault_run.hpp"
#include "tools/bench/cluster_failover_bench.hpp"
#include "tools/bench/crowd_bench.hpp"
#include "tools/bench/failover_bench.hpp"
#include "tools/bench/fault_run.hpp"
#include "tools/bench/load_generator.hpp"
#include "tools/cache/cache_commands.hpp"
#include "tools/config/config_file.hpp"
#include "tools/perf/perf.hpp"
#include "tools/sd_notify.hpp"
#include "transport/channel_server.hpp"
#include "transport/clock.hpp"
#include "transport/domain.hpp"
#include "transport/tunables.hpp"

namespace {

using viaduct::Status;
using viaduct::Tunable;
namespace vt = viaduct::transport;

std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop.store(true);
}

// Under --json a command's output is one JSON document, on stdout or in a file, also when it
// fails: then it carries an "error" object next to whatever results were measured before the
// failure, so that a script never has to tell "no JSON" from "no results".
struct JsonReport {
  bool to_stdout = false;  // the command prints its document on stdout
  std::string path;        // ... or writes it to this file (the bench commands)
  bool printed = false;    // the document is already on stdout
  std::string error;       // the first failure's message
};
JsonReport g_json;

int fail(const Status& s) {
  spdlog::error("{}", s.to_string());
  if (g_json.error.empty()) g_json.error = s.to_string();
  return 1;
}

// Prints a command's document on stdout, with the failure noted so far, if any.
void print_json(nlohmann::json doc) {
  if (!g_json.error.empty()) doc["error"] = {{"message", g_json.error}};
  std::cout << doc.dump(2) << "\n";
  g_json.printed = true;
}

// After a failed command under --json: its document, with an "error" object, exists. A file the
// command wrote before failing keeps its partial results; a command that printed nothing prints
// the error alone.
void finish_json(int exit_status) {
  if (exit_status == 0) return;
  nlohmann::json error = {
      {"exit_status", exit_status},
      {"message",
       g_json.error.empty() ? std::string("failed: the reason is on stderr") : g_json.error}};
  if (g_json.to_stdout) {
    if (!g_json.printed) std::cout << nlohmann::json{{"error", error}}.dump(2) << "\n";
    return;
  }
  if (g_json.path.empty()) return;
  nlohmann::json doc = nlohmann::json::object();
  if (std::ifstream in(g_json.path); in.good()) {
    doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object()) doc = nlohmann::json::object();
  }
  if (!doc.contains("error")) doc["error"] = error;
  std::ofstream(g_json.path) << doc.dump(2) << "\n";
}

constexpr int kExitUsage = 2;

// Bad input that parsing could not catch: the message on stderr, exit 2.
int usage_error(const std::string& message) {
  std::cerr << "viaduct: " << message << "\nRun with --help for more information.\n";
  return kExitUsage;
}

int cmd_info(bool json) {
  auto reports = vt::probe_backends();
  if (json) {
    nlohmann::json j;
    for (const auto& r : reports) {
      j["backends"].push_back({{"scheme", vt::scheme_name(r.backend)},
                               {"usable", r.usable},
                               {"detail", r.detail},
                               {"devices", r.devices}});
    }
    for (const Tunable* t : Tunable::all()) {
      j["tunables"].push_back({{"module", t->module()},
                               {"name", t->name()},
                               {"value", t->get()},
                               {"default", t->default_value()},
                               {"min", t->min_value()},
                               {"max", t->max_value()},
                               {"source", t->source()},
                               {"env", t->env_name()},
                               {"help", t->help()}});
    }
    print_json(j);
    return 0;
  }
  std::cout << "back ends:\n";
  for (const auto& r : reports) {
    std::cout << "  " << vt::scheme_name(r.backend) << "://  "
              << (r.usable ? "usable" : "NOT usable") << "  (" << r.detail << ")\n";
    for (const auto& d : r.devices) std::cout << "      device: " << d << "\n";
  }
  std::cout
      << "  fake://     usable  (in-process, for tests)\n\ntunables (set with --set NAME=VALUE or "
         "the environment variable shown):\n";
  for (const Tunable* t : Tunable::all()) {
    std::printf("  %-32s %12lld  (default %lld, %s, %s)\n      %s\n",
                std::string(t->name()).c_str(), static_cast<long long>(t->get()),
                static_cast<long long>(t->default_value()), std::string(t->source()).c_str(),
                t->env_name().c_str(), std::string(t->help()).c_str());
  }
  return 0;
}

int cmd_perf_server(const std::string& uri, bool blocking) {
  auto address = vt::Address::parse(uri);
  if (!address) return fail(address.status());
  auto domain = vt::Domain::open(address.value());
  if (!domain) return fail(domain.status());
  viaduct::perf::PerfHandler handler;
  vt::ChannelServerOptions options;
  options.busy_poll = !blocking;
  options.on_channel_closed = [](const Status& s) {
    spdlog::info("channel closed: {}", s.to_string());
  };
  auto server = vt::ChannelServer::listen(*domain.value(), address.value(), &handler, options);
  if (!server) return fail(server.status());
  // The bound address on stdout, flushed: scripts and tests read it to find the port.
  std::cout << "listening " << server.value()->address().to_string() << std::endl;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  server.value()->run(g_stop);
  spdlog::info("served {} requests", handler.served());
  return 0;
}

std::vector<std::size_t> parse_sizes(const std::string& text) {
  std::vector<std::size_t> sizes;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto comma = text.find(',', pos);
    sizes.push_back(std::stoull(text.substr(pos, comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return sizes;
}

int cmd_perf_client(const std::string& uri, const std::string& tests, const std::string& sizes_text,
                    std::uint64_t iterations, std::uint32_t depth, double seconds, bool json,
                    bool blocking) {
  auto address = vt::Address::parse(uri);
  if (!address) return fail(address.status());
  auto domain = vt::Domain::open(address.value());
  if (!domain) return fail(domain.status());
  vt::ChannelOptions options;
  options.busy_poll = !blocking;
  auto channel = vt::Channel::connect(*domain.value(), address.value(), options,
                                      static_cast<int>(vt::tunables::connect_timeout_ms.get()));
  if (!channel) return fail(channel.status());
  std::vector<std::size_t> sizes;
  try {
    sizes = parse_sizes(sizes_text);
  } catch (const std::exception&) {
    return fail({viaduct::Code::kInvalidArgument, "bad --sizes '" + sizes_text + "'"});
  }
  nlohmann::json results = nlohmann::json::array();
  // A failure midway keeps what was measured: under --json it is printed with the error.
  auto fail_keeping_results = [&](const Status& st) {
    int rc = fail(st);
    if (json) print_json({{"address", uri}, {"results", results}});
    return rc;
  };
  auto want = [&](const char* t) { return tests == "all" || tests.find(t) != std::string::npos; };
  // On a terminal, say what is being measured: a test of small messages takes seconds, and
  // stdout gets its line only at the end.
  bool progress = isatty(STDERR_FILENO) != 0;
  auto starting = [&](const char* test, std::size_t size) {
    if (progress) std::cerr << "perf: " << test << " " << size << " B ..." << std::endl;
  };
  for (std::size_t size : sizes) {
    if (want("lat")) {
      starting("latency", size);
      auto r =
          viaduct::perf::measure_latency(*channel.value(), size, iterations, iterations / 10 + 10);
      if (!r) return fail_keeping_results(r.status());
      results.push_back(viaduct::perf::to_json(r.value()));
      if (!json) {
        std::printf("latency   %9zu B  rtt p50 %8.2f us  p99 %8.2f us  one-way %7.2f us\n", size,
                    r->rtt_p50_us, r->rtt_p99_us, r->one_way_us());
      }
    }
    if (want("rate")) {
      starting("message rate", size);
      auto r = viaduct::perf::measure_rate(*channel.value(), size, depth, seconds);
      if (!r) return fail_keeping_results(r.status());
      results.push_back(viaduct::perf::to_json(r.value()));
      if (!json)
        std::printf("rate      %9zu B  depth %u  %8.3f Mmsg/s\n", size, depth, r->mmsgs_per_s());
    }
    if (want("bw")) {
      starting("bandwidth", size);
      std::uint64_t transfers = std::max<std::uint64_t>(depth * 4ULL, (256ULL << 20) / size);
      auto r = viaduct::perf::measure_bandwidth(*channel.value(), size, depth, transfers,
                                                std::max(seconds * 5, 2.0));
      if (!r) return fail_keeping_results(r.status());
      results.push_back(viaduct::perf::to_json(r.value()));
      if (!json)
        std::printf("bandwidth %9zu B  depth %u  %9.1f MB/s\n", size, depth, r->mb_per_s());
    }
  }
  if (json) {
    print_json({{"address", uri}, {"results", results}});
  }
  return 0;
}

// The built-in service of `viaduct serve`: echoes each request (a stand-in for an application).
class EchoService final : public viaduct::cluster::ServiceHandler {
 public:
  std::uint32_t handle(std::span<const std::byte> request,
                       std::vector<std::byte>& response) override {
    response.assign(request.begin(), request.end());
    return 0;
  }
};

// `viaduct serve --service counter`: a service with state, to show exactly-once execution across
// failovers. A request is a u64 to add; the answer is the new total (u64). The passive keeps the
// same total through replication.
class CounterService final : public viaduct::cluster::ServiceHandler {
 public:
  std::uint32_t handle(std::span<const std::byte> request,
                       std::vector<std::byte>& response) override {
    if (request.size() != 8) return 1;
    total_ += load(request);
    response.resize(8);
    std::memcpy(response.data(), &total_, 8);
    return 0;
  }
  void apply_replica(std::span<const std::byte> request,
                     std::span<const std::byte> /*response*/) override {
    if (request.size() == 8) total_ += load(request);
  }
  void snapshot(std::vector<std::byte>& state) override {
    state.resize(8);
    std::memcpy(state.data(), &total_, 8);
  }
  void restore(std::span<const std::byte> state) override {
    if (state.size() == 8) total_ = load(state);
  }

 private:
  static std::uint64_t load(std::span<const std::byte> b) {
    std::uint64_t v = 0;
    std::memcpy(&v, b.data(), 8);
    return v;
  }
  std::uint64_t total_ = 0;
};

std::atomic<bool> g_promote{false};
void on_promote(int) {
  g_promote.store(true);
}

int cmd_serve(viaduct::cluster::ServiceConfig config, const std::string& service,
              const std::string& key_file) {
  std::optional<viaduct::cluster::ClusterKey> key;
  if (!key_file.empty()) {
    auto loaded = viaduct::cluster::ClusterKey::load(key_file);
    if (!loaded) return fail(loaded.status());
    key = std::move(loaded.value());
    config.cluster_key = &*key;
  }
  // Keep the partner link's code and stack in memory: a page fault on a busy host is exactly the
  // delay real-time priority is there to avoid (corosync does the same). MCL_ONFAULT locks only
  // the pages the process touches: locking every mapping up front (plain MCL_FUTURE) made each
  // thread stack and arena resident, and a SIGKILLed server then spent 5-19 ms unmapping it
  // before the kernel closed its sockets (exit tears memory down first), which is how long its
  // clients and partner took to notice (failover stall p99 16.7 ms, against 5 ms).
  if (viaduct::cluster::tunables::partner_realtime_priority.get() > 0 &&
      !config.partner_uri.empty()) {
    (void)mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT);
  }
  EchoService echo;
  CounterService counter;
  viaduct::cluster::ServiceHandler* handler =
      service == "counter" ? static_cast<viaduct::cluster::ServiceHandler*>(&counter) : &echo;
  auto server = viaduct::cluster::ServiceServer::start(config, handler);
  if (!server) return fail(server.status());
  auto& s = *server.value();
  // One line per event on stdout, flushed: tests and scripts follow the role changes.
  s.on_role_change = [&config, &s](viaduct::cluster::RoleEvent event,
                                   const viaduct::cluster::RoleState& r) {
    bool took_over = event == viaduct::cluster::RoleEvent::kTookOver;
    std::cout << (took_over ? "took-over " : "stepped-down ") << config.name << " epoch " << r.epoch
              << " at-ns " << viaduct::steady_now_ns();
    if (took_over) std::cout << " reason " << s.takeover_reason();
    std::cout << std::endl;
    (void)viaduct::tools::sd_notify("STATUS=" + std::string(took_over ? "active" : "passive") +
                                    " epoch " + std::to_string(r.epoch));
  };
  s.on_replication = [](bool up) {
    std::cout << (up ? "replicating to partner" : "replication stopped: serving alone")
              << std::endl;
  };
  s.on_notice = [](const std::string& line) { std::cout << line << std::endl; };
  if (s.partner_link() != nullptr && !s.partner_link()->realtime()) {
    // Give the thread a moment to try; report once.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!s.partner_link()->realtime())
      std::cerr << "viaduct: partner link runs without real-time priority (not permitted here): "
                   "a busy host may delay its pings"
                << std::endl;
  }
  std::cout << "serving " << config.name << " " << s.address().to_string() << " role "
            << viaduct::cluster::role_name(s.role().role) << " epoch " << s.role().epoch
            << " lookup "
            << (s.responder() != nullptr ? s.responder()->address().to_string() : "off")
            << std::endl;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // Listening, lookup bound, partner link started: systemd (Type=notify) may start what needs us.
  std::string status = std::string(viaduct::cluster::role_name(s.role().role)) + " epoch " +
                       std::to_string(s.role().epoch);
  if (!viaduct::tools::sd_notify("READY=1\nSTATUS=" + status)) {
    spdlog::warn("NOTIFY_SOCKET is set but the readiness notification could not be sent");
  }
  // SIGUSR1: the operator promotes this instance even though it is out of sync (unclean).
  std::signal(SIGUSR1, on_promote);
  std::thread promoter([&] {
    while (!g_stop.load()) {
      if (g_promote.exchange(false)) s.promote();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  s.run(g_stop);
  (void)viaduct::tools::sd_notify("STOPPING=1");
  promoter.join();
  return 0;
}

// "HOST:PORT[,HOST:PORT...]" of the lookup responders.
viaduct::Result<std::vector<viaduct::failover::UdpEndpoint>> parse_cluster(
    const std::string& cluster) {
  auto responders = viaduct::failover::parse_endpoint_list(cluster);
  if (!responders)
    return viaduct::Status(responders.status().code(),
                           "--cluster: " + responders.status().message());
  return responders;
}

int cmd_lookup(const std::string& name, const std::string& cluster, int timeout_ms, bool json) {
  auto responders = parse_cluster(cluster);
  if (!responders) return fail(responders.status());
  auto a = viaduct::failover::lookup(name, responders.value(), timeout_ms);
  if (!a) return fail(a.status());
  const auto& r = a->record;
  if (json) {
    print_json(nlohmann::json{{"name", r.instance_name},
                              {"address", r.server_name},
                              {"epoch", r.epoch},
                              {"tcp_port", r.tcp_port},
                              {"via_port", r.via_port},
                              {"via_host", r.via_host},
                              {"responder", a->responder.to_string()},
                              {"elapsed_ms", a->elapsed_ms}});
  } else {
    std::printf(
        "%s is served by %s (epoch %llu): tcp %u%s, answered by %s in %.2f ms\n",
        r.instance_name.c_str(), r.server_name.c_str(), static_cast<unsigned long long>(r.epoch),
        r.tcp_port,
        r.via_port != 0 ? (", via " + r.via_host + ":" + std::to_string(r.via_port)).c_str() : "",
        a->responder.to_string().c_str(), a->elapsed_ms);
  }
  return 0;
}

// `viaduct config check FILE`: what the (valid) file describes, one line per server.
int cmd_config_check(const viaduct::config::ConfigFile& file) {
  std::cout << file.path << ": " << file.services.size() << " service(s)"
            << (file.key_file.empty() ? "" : ", cluster key " + file.key_file) << "\n";
  for (const auto& [name, value] : file.tunables) {
    std::cout << "  tunable " << name << " = " << value << "\n";
  }
  for (const auto& service : file.services) {
    std::cout << "  service " << service.name << " (" << service.kind << ")\n";
    for (const auto& server : service.servers) {
      std::cout << "    " << server.id << ": " << (server.active ? "active" : "passive") << " at "
                << server.listen << ", lookup " << server.lookup << ", epoch " << server.epoch;
      for (const auto& [name, value] : server.tunables) std::cout << ", " << name << "=" << value;
      std::cout << "\n";
    }
  }
  if (file.cache) {
    std::cout << "  cache cluster: database " << file.cache->database << ", master "
              << file.cache->master_id << " at " << file.cache->master_control << "\n";
    for (const auto& server : file.cache->servers) {
      std::cout << "    " << server.id << " (group " << server.group << ") at " << server.listen
                << ", control " << server.control << ", types";
      for (const auto& type : server.types) std::cout << " " << type;
      std::cout << "\n";
    }
  }
  return 0;
}

// This program's path: the benches start their servers with it.
std::string own_executable() {
  char self[4096] = {};
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  return n > 0 ? std::string(self, static_cast<std::size_t>(n)) : std::string("/proc/self/exe");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"viaduct: VIA-style low-latency transport with seamless failover"};
  // At most one; none is reported below, after parsing, so that a misspelt subcommand is named
  // ("not expected: X") instead of reported as a missing one.
  app.require_subcommand(0, 1);
  // The linked library's version (viaduct::version()), which the headers' must match.
  app.set_version_flag("--version", std::string("viaduct ") + viaduct::version());
  app.fallthrough();  // global options (--set, --log-level) may follow the subcommand
  std::vector<std::string> sets;
  app.add_option("--set", sets, "set a tunable, NAME=VALUE (see `viaduct info`)");
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();

  auto* info = app.add_subcommand("info", "back ends, providers and devices usable here; tunables");
  bool info_json = false;
  info->add_flag("--json", info_json, "machine-readable output");

  auto* perf = app.add_subcommand("perf", "latency, message rate and bandwidth (like perftest)");
  perf->require_subcommand(1);
  perf->fallthrough();
  auto* server = perf->add_subcommand("server", "serve perf requests until SIGINT/SIGTERM");
  std::string listen_uri = "ofi+tcp://127.0.0.1:7400";
  bool blocking = false;
  server->add_option("--listen", listen_uri, "address to listen on")->capture_default_str();
  server->add_flag("--blocking", blocking, "block in epoll when idle instead of busy-polling");
  auto* client = perf->add_subcommand("client", "measure against a perf server");
  std::string connect_uri = "ofi+tcp://127.0.0.1:7400";
  std::string tests = "all";
  std::string sizes = "64,4096,65536";
  std::uint64_t iterations = 10000;
  std::uint32_t depth = 32;
  double seconds = 2.0;
  bool json = false;
  client->add_option("--connect", connect_uri, "server address")->capture_default_str();
  client->add_option("--tests", tests, "lat,rate,bw (comma-separated) or all")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            std::stringstream in(text);
            std::string one;
            bool any = false;
            while (std::getline(in, one, ',')) {
              if (one != "lat" && one != "rate" && one != "bw" && one != "all") {
                return "unknown test '" + one + "' (lat, rate, bw or all)";
              }
              any = true;
            }
            return any ? std::string() : std::string("no test named (lat, rate, bw or all)");
          },
          "TESTS"))
      ->capture_default_str();
  client->add_option("--sizes", sizes, "payload sizes in bytes, comma-separated")
      ->capture_default_str();
  client->add_option("--iterations", iterations, "latency round trips per size")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
      ->capture_default_str();
  client->add_option("--depth", depth, "requests in flight for rate and bandwidth")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  client->add_option("--seconds", seconds, "duration of each rate test")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  client->add_flag("--json", json, "print results as JSON");
  client->add_flag("--blocking", blocking, "block on the CQ fd instead of busy-polling");

  auto* lookup = app.add_subcommand("lookup", "ask the cluster over UDP (MC-SQLR) who serves NAME");
  std::string lookup_name;
  std::string cluster = "127.0.0.1:1434";
  int lookup_timeout_ms = 1000;
  bool lookup_json = false;
  lookup->add_option("name", lookup_name, "service name")->required();
  lookup->add_option("--cluster", cluster, "lookup responders, HOST:PORT[,HOST:PORT...]")
      ->capture_default_str();
  lookup->add_option("--timeout-ms", lookup_timeout_ms, "give up after")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  lookup->add_flag("--json", lookup_json, "print the answer as JSON");
  std::string lookup_config;
  lookup->add_option("--config", lookup_config, "take --cluster from this configuration file")
      ->excludes(lookup->get_option("--cluster"));

  auto* load = app.add_subcommand(
      "load", "client load generator: requests in flight to NAME through a failover session");
  viaduct::bench::LoadOptions load_options;
  std::string load_cluster = "127.0.0.1:1434";
  load->add_option("name", load_options.name, "service name")->required();
  load->add_option("--cluster", load_cluster, "lookup responders, HOST:PORT[,HOST:PORT...]")
      ->capture_default_str();
  load->add_option("--depth", load_options.depth, "requests in flight")->capture_default_str();
  load->add_option("--size", load_options.size, "request payload bytes (>= 8)")
      ->capture_default_str();
  load->add_option("--seconds", load_options.seconds, "how long to run")->capture_default_str();
  load->add_option("--report-every", load_options.report_every_s,
                   "progress line every this many seconds (0: none)")
      ->capture_default_str();
  load->add_flag("--json", load_options.json, "print the summary as JSON (no progress lines)");
  std::string load_server_key;
  load->add_option("--server-key", load_server_key,
                   "the service's public key (viaduct key-public): servers must prove the name");
  std::string load_config;
  load->add_option("--config", load_config,
                   "take --cluster and --server-key from this configuration file")
      ->excludes(load->get_option("--cluster"))
      ->excludes(load->get_option("--server-key"));

  auto* serve = app.add_subcommand("serve", "run one server instance of a named service (echo)");
  viaduct::cluster::ServiceConfig serve_config;
  std::string role_text = "active";
  std::string lookup_bind = "127.0.0.1:1434";
  serve->add_option("--name", serve_config.name, "service name (1..31 bytes)");
  std::string serve_service = "echo";
  serve
      ->add_option("--service", serve_service,
                   "echo (answers the request) or counter (adds a u64, answers the total)")
      ->check(CLI::IsMember({"echo", "counter"}))
      ->capture_default_str();
  serve->add_option("--role", role_text, "initial role: active|passive")
      ->check(CLI::IsMember({"active", "passive"}))
      ->capture_default_str();
  serve->add_option("--listen", serve_config.listen_uri, "transport address to serve on");
  serve
      ->add_option("--epoch", serve_config.initial_epoch,
                   "epoch to start at; after losing both partners, start above the last epoch "
                   "clients saw so their sessions follow")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 62))
      ->capture_default_str();
  serve->add_option("--partner", serve_config.partner_uri, "the partner's transport address");
  serve->add_option("--lookup", lookup_bind, "UDP HOST:PORT of the lookup responder, or 'off'")
      ->capture_default_str();
  std::string serve_key_file;
  serve->add_option("--cluster-key", serve_key_file,
                    "the cluster secret (viaduct keygen FILE); required with --partner");
  std::string serve_config_file, serve_id;
  auto* serve_config_opt =
      serve->add_option("--config", serve_config_file,
                        "run server --id of this configuration file (instead of the options "
                        "above)");
  for (const char* own : {"--name", "--service", "--role", "--listen", "--epoch", "--partner",
                          "--lookup", "--cluster-key"}) {
    serve_config_opt->excludes(serve->get_option(own));
  }
  serve->add_option("--id", serve_id, "the server's id in --config")->needs(serve_config_opt);

  auto* config_cmd = app.add_subcommand("config", "configuration files");
  config_cmd->require_subcommand(1);
  auto* config_check = config_cmd->add_subcommand(
      "check", "read and check a configuration file; print what it describes");
  std::string config_check_file;
  config_check->add_option("file", config_check_file, "the file")->required();

  auto* keygen = app.add_subcommand("keygen", "write a new cluster secret to FILE (mode 0600)");
  std::string keygen_file;
  keygen->add_option("file", keygen_file, "where to write it (must not exist)")->required();
  auto* key_public = app.add_subcommand(
      "key-public", "print the public key of a service, for its clients to pin (--server-key)");
  std::string key_public_file, key_public_name;
  key_public->add_option("--cluster-key", key_public_file, "the cluster secret")->required();
  key_public->add_option("--name", key_public_name, "service name")->required();

  viaduct::tools::CacheCommands cache_cmds;
  viaduct::tools::add_cache_commands(app, cache_cmds);

  auto* bench = app.add_subcommand("bench", "benchmarks that drive real processes");
  bench->require_subcommand(1);
  viaduct::tools::add_cache_bench_commands(*bench, cache_cmds);
  bench->fallthrough();
  auto* bench_failover = bench->add_subcommand(
      "failover", "active/passive pair, steady stream, active killed or frozen; N trials");
  viaduct::bench::FailoverBenchOptions fb;
  bench_failover
      ->add_option("--mode", fb.mode,
                   "kill (SIGKILL) | stop (SIGSTOP) | cut (the active's link downed, between "
                   "network namespaces; root) | none (steady run, no failure)")
      ->check(CLI::IsMember({"kill", "stop", "cut", "none"}))
      ->capture_default_str();
  bench_failover->add_option("--trials", fb.trials, "number of failovers")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  bench_failover
      ->add_option("--transport", fb.transport,
                   "scheme://host the pair serves on (e.g. verbs://10.77.0.1 in the rxe guest)")
      ->capture_default_str();
  bench_failover->add_option("--seconds", fb.seconds, "length of a --mode none run")
      ->capture_default_str();
  bench_failover->add_option("--base-port", fb.base_port, "first of the ports used on 127.0.0.1")
      ->capture_default_str();
  bench_failover->add_option("--json", fb.json_path, "write results as JSON to this file");
  bench_failover->add_option("--plot", fb.plot_path, "write a PNG plot (gnuplot) to this file");
  auto* bench_faults = bench->add_subcommand(
      "faults",
      "randomised fault run (seeded): a counter pair under load, SIGKILL/SIGSTOP/double faults "
      "and restarts; checks that nothing acknowledged is lost or executed twice");
  viaduct::bench::FaultRunOptions fr;
  std::uint64_t fr_seed = 0;
  auto* fr_seed_opt =
      bench_faults->add_option("--seed", fr_seed, "PRNG seed (default: random, printed)");
  bench_faults->add_option("--faults", fr.faults, "number of faults")->capture_default_str();
  bench_faults->add_option("--sessions", fr.sessions, "client sessions (one thread each)")
      ->capture_default_str();
  bench_faults->add_option("--depth", fr.depth, "requests in flight per session")
      ->capture_default_str();
  bench_faults->add_option("--hog", fr.hog_cpus, "run stress-ng --cpu N beside (0: none)")
      ->capture_default_str();
  bench_faults->add_option("--max-seconds", fr.max_seconds, "time cap of the whole run")
      ->capture_default_str();
  bench_faults
      ->add_option("--restart-percent", fr.restart_percent,
                   "chance that a dead server is back before the next fault (100: always)")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  std::string fr_on_double = "refuse";
  bench_faults
      ->add_option("--on-double-fault", fr_on_double,
                   "after a double fault that leaves no in-sync server: refuse (end the era, "
                   "start a fresh pair) or promote (SIGUSR1 the survivor, measure the loss)")
      ->check(CLI::IsMember({"refuse", "promote"}))
      ->capture_default_str();
  bench_faults->add_option("--base-port", fr.base_port, "first of 4 ports used on 127.0.0.1")
      ->capture_default_str();
  bench_faults->add_option("--kinds", fr.kinds, "fault kinds to draw from (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(viaduct::bench::fault_kind_names()));
  bench_faults->add_option(
      "--server-arg", fr.server_args,
      "extra argument for every `viaduct serve` (repeatable; e.g. --server-arg=--set "
      "--server-arg=partner_takeover_after_ms=50)");
  bench_faults->add_option("--log-dir", fr.log_dir, "servers' stderr (default: a new /tmp dir)");
  bench_faults->add_option("--json", fr.json_path, "write the verdicts as JSON to this file");

  auto* bench_cluster = bench->add_subcommand(
      "cluster-failover",
      "a local cache cluster under a checked load, a data server killed, frozen or cut off N "
      "times: the client's stall, the master's verdict and notices, the return, the failover "
      "server's database reads");
  viaduct::bench::ClusterFailoverOptions cf;
  bench_cluster
      ->add_option("--kind", cf.kind,
                   "kill (SIGKILL, then restart) | freeze (SIGSTOP, then SIGCONT) | cut (s1's "
                   "link down, then up: network namespaces, needs root and iproute2)")
      ->check(CLI::IsMember({"kill", "freeze", "cut"}))
      ->capture_default_str();
  bench_cluster->add_option("--trials", cf.trials, "number of faults")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  bench_cluster->add_option("--base-port", cf.base_port, "the master's port; servers above it")
      ->capture_default_str();
  bench_cluster->add_option("--json", cf.json_path, "write results as JSON to this file");
  bench_cluster->add_option("--plot", cf.plot_path, "write a PNG plot (gnuplot) to this file");
  auto* bench_cache_faults = bench->add_subcommand(
      "cache-faults",
      "randomised fault run (seeded) of a local cache cluster under a checked load: kills, "
      "freezes, double faults, restarts; checks that nothing acknowledged is lost or stale");
  viaduct::bench::CacheFaultRunOptions cfr;
  std::uint64_t cfr_seed = 0;
  auto* cfr_seed_opt =
      bench_cache_faults->add_option("--seed", cfr_seed, "PRNG seed (default: random, printed)");
  bench_cache_faults->add_option("--faults", cfr.faults, "number of faults")->capture_default_str();
  bench_cache_faults->add_option("--hog", cfr.hog_cpus, "run stress-ng --cpu N beside (0: none)")
      ->capture_default_str();
  bench_cache_faults->add_option("--max-seconds", cfr.max_seconds, "time cap of the whole run")
      ->capture_default_str();
  bench_cache_faults->add_option("--base-port", cfr.base_port, "the master's port; servers above")
      ->capture_default_str();
  bench_cache_faults->add_option("--json", cfr.json_path,
                                 "write the verdicts as JSON to this file");

  auto* bench_crowd = bench->add_subcommand(
      "crowd",
      "a working client alone, then beside N idle heartbeating clients and a stream of raw TCP "
      "connects to a perf server; reports the throughput ratio and the server's RSS");
  viaduct::bench::CrowdBenchOptions cb;
  bench_crowd->add_option("--port", cb.port, "the server's port on 127.0.0.1")
      ->capture_default_str();
  bench_crowd->add_option("--idle", cb.idle, "idle connected clients")->capture_default_str();
  bench_crowd->add_option("--seconds", cb.seconds, "length of each measurement")
      ->capture_default_str();
  bench_crowd->add_option("--half-open-per-s", cb.half_open_per_s, "raw TCP connects per second")
      ->capture_default_str();
  bench_crowd
      ->add_option("--half-open-held", cb.half_open_held,
                   "of them, at most this many held open silent")
      ->capture_default_str();
  bench_crowd
      ->add_option("--crowd-poll-ms", cb.crowd_poll_ms,
                   "how often the idle clients check their keep-alives")
      ->capture_default_str();
  bench_crowd->add_option("--server-arg", cb.server_args,
                          "extra argument for the server (repeatable; e.g. "
                          "--server-arg=--set --server-arg=server_idle_sweep_ms=5)");
  bench_crowd->add_option("--server-log", cb.server_log, "the server's stderr goes here")
      ->capture_default_str();
  bench_crowd->add_option("--json", cb.json_path, "write the results as JSON to this file");
  bench_crowd->add_option("--rounds", cb.rounds, "rounds, each on a fresh server (median ratio)")
      ->capture_default_str();
  bench_crowd->add_flag("--pair", cb.pair,
                        "crowd the active of a `viaduct serve` pair (ports --port..--port+3) "
                        "and count takeovers, instead of a perf server");

  auto* bench_cache = bench->add_subcommand(
      "cache",
      "YCSB-style workloads A (50/50), B (95/5) and C (reads) with Zipfian keys against a local "
      "cache cluster, with SQLite, PostgreSQL and Redis as baselines in the same run; p50/p99 "
      "and ops/s at depth 1 and 32 (exit 0 whether or not viaduct beats Redis)");
  viaduct::bench::CacheBenchOptions kb;
  bench_cache->add_option("--base-port", kb.base_port, "the cluster's first port on 127.0.0.1")
      ->capture_default_str();
  bench_cache->add_option("--redis-port", kb.redis_port, "the first port tried for redis-server")
      ->capture_default_str();
  bench_cache->add_option("--records", kb.records, "records loaded")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  bench_cache->add_option("--value-bytes", kb.value_bytes, "bytes per value")
      ->check(CLI::Range(8, 1 << 20))
      ->capture_default_str();
  bench_cache->add_option("--seconds", kb.seconds, "length of each measurement")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
  bench_cache
      ->add_option("--servers", kb.servers,
                   "data servers in the cluster's one group (2 at least: one is s1's failover)")
      ->check(CLI::Range(2, 8))
      ->capture_default_str();
  bench_cache->add_option("--busy-poll", kb.busy_poll, "cache_server_busy_poll of the servers")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  bench_cache->add_option("--seed", kb.seed, "the key sequence's seed")->capture_default_str();
  bench_cache->add_option("--postgres", kb.postgres,
                          "a PostgreSQL URI for the baseline (default: VIADUCT_TEST_POSTGRES_URI)");
  bench_cache->add_option("--json", kb.json_path, "write the results as JSON to this file");

  // Exit codes: 0 ok (and --help, --version), 1 a runtime failure, 2 bad usage (CLI11 prints
  // its message on stderr; it would exit 104-109 by itself).
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  if (app.get_subcommands().empty()) {
    return usage_error(
        "a subcommand is required: info, perf, lookup, load, serve, keygen, key-public, bench, "
        "master, cache-server, cache, key-client");
  }
  // Diagnostics on stderr, results on stdout (what scripts parse).
  spdlog::set_default_logger(spdlog::stderr_color_mt("viaduct"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  // A misspelt VIADUCT_* variable is named; one with a bad value is refused, as a bad --set is.
  std::vector<std::string> env_warnings;
  if (Status st = Tunable::check_environment(&env_warnings); !st) return usage_error(st.message());
  for (const auto& warning : env_warnings) spdlog::warn("{}", warning);
  // A configuration file is checked whole before anything starts: a bad one is bad usage (exit 2)
  // naming the key and its line. Its tunables apply under the environment's and --set's.
  std::optional<viaduct::config::ConfigFile> config_file;
  const viaduct::config::ServiceEntry* config_service = nullptr;
  const viaduct::config::ServerEntry* config_server = nullptr;
  std::string config_path = !cache_cmds.config_path.empty() ? cache_cmds.config_path
                            : !serve_config_file.empty()    ? serve_config_file
                            : !load_config.empty()          ? load_config
                            : !lookup_config.empty()        ? lookup_config
                                                            : config_check_file;
  if (!config_path.empty()) {
    auto loaded = viaduct::config::load(config_path);
    if (!loaded) return usage_error(loaded.status().message());
    config_file = std::move(loaded.value());
    if (serve->parsed()) {
      if (serve_id.empty()) return usage_error("--config needs --id: which server to run");
      config_server = config_file->server(serve_id, &config_service);
      if (config_server == nullptr) {
        return usage_error(config_path + ": no server with id '" + serve_id + "'");
      }
    }
    std::string name = load->parsed() ? load_options.name : lookup_name;
    if (load->parsed() || lookup->parsed()) {
      config_service = config_file->service(name);
      if (config_service == nullptr) {
        return usage_error(config_path + ": no service named '" + name + "'");
      }
    }
    if (cache_cmds.parsed()) {
      auto instance = viaduct::tools::cache_instance(*config_file, cache_cmds);
      if (!instance) return usage_error(instance.status().message());
      if (Status st = viaduct::config::apply_tunables(*config_file, instance.value()); !st) {
        return usage_error(config_path + ": " + st.message());
      }
    } else if (Status st = viaduct::config::apply_tunables(*config_file, config_server); !st) {
      return usage_error(config_path + ": " + st.message());
    }
  }
  for (const auto& s : sets) {
    if (Status st = Tunable::set_from_string(s); !st) return usage_error(st.message());
  }
  // Where a --json document goes, so that a failure still produces one (finish_json).
  g_json.to_stdout = (info->parsed() && info_json) || (client->parsed() && json) ||
                     (lookup->parsed() && lookup_json) || (load->parsed() && load_options.json);
  if (bench_failover->parsed()) g_json.path = fb.json_path;
  if (bench_faults->parsed()) g_json.path = fr.json_path;
  if (bench_crowd->parsed()) g_json.path = cb.json_path;
  if (bench_cluster->parsed()) g_json.path = cf.json_path;
  if (bench_cache_faults->parsed()) g_json.path = cfr.json_path;
  if (bench_cache->parsed()) g_json.path = kb.json_path;
  load_options.print_json = print_json;
  // A file left by an earlier run must not pass for this run's partial results.
  if (!g_json.path.empty()) std::remove(g_json.path.c_str());
  auto run_command = [&]() -> int {
    if (info->parsed()) return cmd_info(info_json);
    if (bench_failover->parsed()) {
      fb.tool = own_executable();
      return viaduct::bench::run_failover_bench(fb);
    }
    if (bench_cluster->parsed()) {
      cf.tool = own_executable();
      return viaduct::bench::run_cluster_failover_bench(cf);
    }
    if (bench_cache_faults->parsed()) {
      cfr.tool = own_executable();
      if (cfr_seed_opt->count() > 0) cfr.seed = cfr_seed;
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return viaduct::bench::run_cache_fault_run(cfr, g_stop);
    }
    if (bench_crowd->parsed()) {
      cb.tool = own_executable();
      return viaduct::bench::run_crowd_bench(cb);
    }
    if (bench_cache->parsed()) {
      kb.tool = own_executable();
      return viaduct::bench::run_cache_bench(kb);
    }
    if (bench_faults->parsed()) {
      fr.tool = own_executable();
      if (fr_seed_opt->count() > 0) fr.seed = fr_seed;
      fr.promote_on_double_fault = fr_on_double == "promote";
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return viaduct::bench::run_fault_run(fr, g_stop);
    }
    if (config_check->parsed()) return cmd_config_check(*config_file);
    if (cache_cmds.parsed()) {
      cache_cmds.tool = own_executable();
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return viaduct::tools::run_cache_command(cache_cmds, config_file ? &*config_file : nullptr,
                                               g_stop);
    }
    if (serve->parsed()) {
      if (config_server != nullptr) {
        serve_config.name = config_service->name;
        serve_service = config_service->kind;
        role_text = config_server->active ? "active" : "passive";
        serve_config.initial_epoch = config_server->epoch;
        serve_config.listen_uri = config_server->listen;
        for (const auto& other : config_service->servers) {
          if (&other != config_server) serve_config.partner_uri = other.listen;
        }
        lookup_bind = config_server->lookup;
        serve_key_file = config_file->key_file;
      } else if (serve_config.name.empty()) {
        return usage_error("--name is required (or --config FILE --id ID)");
      } else if (serve_config.listen_uri.empty()) {
        return usage_error("--listen is required (or --config FILE --id ID)");
      }
      serve_config.initial_role = role_text == "active" ? viaduct::cluster::Role::kActive
                                                        : viaduct::cluster::Role::kPassive;
      if (lookup_bind == "off") {
        serve_config.lookup_enabled = false;
      } else {
        auto e = viaduct::failover::UdpEndpoint::parse(lookup_bind);
        if (!e) return fail(e.status());
        serve_config.lookup_host = e->host();
        serve_config.lookup_port = e->port();
      }
      return cmd_serve(serve_config, serve_service, serve_key_file);
    }
    if (keygen->parsed()) {
      if (Status st = viaduct::cluster::ClusterKey::generate(keygen_file); !st) return fail(st);
      return 0;
    }
    if (key_public->parsed()) {
      auto key = viaduct::cluster::ClusterKey::load(key_public_file);
      if (!key) return fail(key.status());
      std::cout << viaduct::failover::public_key_hex(key->service_public_key(key_public_name))
                << std::endl;
      return 0;
    }
    if (load->parsed()) {
      if (config_service != nullptr) {
        load_cluster = viaduct::config::ConfigFile::lookup_list(*config_service);
        if (!config_file->key_file.empty()) {
          auto key = viaduct::cluster::ClusterKey::load(config_file->key_file);
          if (!key) return fail(key.status());
          load_server_key =
              viaduct::failover::public_key_hex(key->service_public_key(config_service->name));
        }
      }
      auto responders = parse_cluster(load_cluster);
      if (!responders) return fail(responders.status());
      load_options.cluster = responders.value();
      if (!load_server_key.empty()) {
        auto pk = viaduct::failover::parse_public_key(load_server_key);
        if (!pk) return fail(pk.status());
        load_options.server_key = pk.value();
      }
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return viaduct::bench::run_load(load_options, g_stop);
    }
    if (lookup->parsed()) {
      if (config_service != nullptr) {
        cluster = viaduct::config::ConfigFile::lookup_list(*config_service);
      }
      return cmd_lookup(lookup_name, cluster, lookup_timeout_ms, lookup_json);
    }
    if (server->parsed()) return cmd_perf_server(listen_uri, blocking);
    if (client->parsed()) {
      return cmd_perf_client(connect_uri, tests, sizes, iterations, depth, seconds, json, blocking);
    }
    return 0;
  };
  int exit_status = run_command();
  finish_json(exit_status);
  return exit_status;
}
