#include "tools/cache/liar_run.hpp"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cluster/cache/cache_client.hpp"
#include "cluster/cache/control_protocol.hpp"
#include "cluster/member_auth.hpp"
#include "failover/udp_socket.hpp"
#include "tools/cache/cache_workload.hpp"
#include "tools/cache/local_cluster.hpp"
#include "transport/clock.hpp"

namespace viaduct::tools {

namespace cc = viaduct::cluster::cache;

int run_liar_run(const LiarRunOptions& options) {
  std::string dir = (std::filesystem::temp_directory_path() / "viaduct-liar-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) return 1;
  LocalClusterOptions cluster_options;
  cluster_options.tool = options.tool;
  cluster_options.dir = dir;
  cluster_options.base_port = options.base_port;
  auto created = LocalCluster::create(cluster_options);
  if (!created) {
    std::cerr << "viaduct bench cache-liar: " << created.status().to_string() << "\n";
    return 1;
  }
  auto& cluster = *created.value();
  if (Status s = cluster.start(); !s) {
    std::cerr << "viaduct bench cache-liar: " << s.to_string() << "\n";
    return 1;
  }
  auto key = cluster::ClusterKey::load(cluster.key_path());
  auto client_options = cluster.client_options("steady-load");
  if (!key || !client_options) {
    std::cerr << "viaduct bench cache-liar: cannot read the cluster key\n";
    return 1;
  }
  auto client = cc::CacheClient::open(client_options.value());
  if (!client) {
    std::cerr << "viaduct bench cache-liar: " << client.status().to_string() << "\n";
    return 1;
  }
  CacheWorkloadOptions load;
  load.seconds = options.seconds;
  CacheWorkload workload(*client.value(), load);
  std::atomic<bool> stop{false};
  std::cout << "=== " << options.seconds << " s of checked load; a client with the clients' key "
            << "reports a healthy server as offline every " << options.report_every_ms << " ms"
            << std::endl;
  std::thread runner([&] { workload.run(stop); });
  // The liar.
  auto socket = failover::UdpSocket::bind(failover::UdpEndpoint::from("127.0.0.1", 0).value());
  auto master = failover::UdpEndpoint::parse(client_options.value().master_control);
  cluster::ClusterKey clients = key->derive("clients");
  std::vector<std::byte> wire;
  auto ids = cluster.server_ids();
  std::uint64_t lies = 0;
  std::int64_t end = steady_now_ns() + static_cast<std::int64_t>(options.seconds * 1e9);
  while (steady_now_ns() < end) {
    cc::ControlMessage lie;
    lie.kind = cc::ControlKind::kReport;
    lie.flags = cc::kFlagFromClient;
    lie.nonce = cc::fresh_control_nonce();
    lie.subject = ids[lies % ids.size()];
    lie.sender = "liar";
    if (cc::encode_control(lie, clients, wire).is_ok()) (void)socket->send_to(wire, master.value());
    ++lies;
    std::this_thread::sleep_for(std::chrono::milliseconds(options.report_every_ms));
  }
  runner.join();
  workload.verify(cluster.database());
  std::uint64_t verified = 0, offline = 0;
  for (const auto& line : cluster.lines()) {
    if (line.rfind("master verified-alive ", 0) == 0) ++verified;
    if (line.rfind("master offline ", 0) == 0) ++offline;
  }
  bool alive = cluster.alive("master");
  for (const auto& id : ids) alive = alive && cluster.alive(id);
  const auto& r = workload.report();
  bool held = r.held() && offline == 0 && alive;
  nlohmann::json doc = {{"seconds", options.seconds},
                        {"false_reports", lies},
                        {"verifications_alive", verified},
                        {"offline_marks", offline},
                        {"operations", r.operations},
                        {"errors", r.errors},
                        {"stale_reads", r.stale_reads},
                        {"lost_writes", r.lost_writes},
                        {"all_alive", alive},
                        {"held", held}};
  std::cout << doc.dump() << std::endl;
  if (!options.json.empty()) std::ofstream(options.json) << doc.dump(2) << "\n";
  std::filesystem::remove_all(dir);
  return held ? 0 : 1;
}

}  // namespace viaduct::tools
