// One server of the replicated key-value service. Run two: an active and a passive partner.
//
//   kv_server --name KV --role active  --listen ofi+tcp://127.0.0.1:7000 \
//             --partner ofi+tcp://127.0.0.1:7001 --lookup 127.0.0.1:7100 --cluster-key FILE
//   kv_server --name KV --role passive --listen ofi+tcp://127.0.0.1:7001 \
//             --partner ofi+tcp://127.0.0.1:7000 --lookup 127.0.0.1:7101 --cluster-key FILE
//
// It prints its service key (for the clients), then one line per role change.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include <viaduct/server.hpp>
#include <viaduct/version.hpp>

#include "kv_service.hpp"

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop.store(true);
}

}  // namespace

int main(int argc, char** argv) {
  viaduct::ServerOptions options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--name")
      options.name = value;
    else if (flag == "--role")
      options.role =
          value == "active" ? viaduct::ServerRole::kActive : viaduct::ServerRole::kPassive;
    else if (flag == "--listen")
      options.listen = value;
    else if (flag == "--partner")
      options.partner = value;
    else if (flag == "--lookup")
      options.lookup = value;
    else if (flag == "--cluster-key")
      options.cluster_key_file = value;
    else {
      std::fprintf(stderr, "kv_server: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  kv::Store store;
  auto server = viaduct::Server::start(options, store);
  if (!server) {
    std::fprintf(stderr, "kv_server: %s\n", server.status().to_string().c_str());
    return 1;
  }
  (*server)->on_role_change([](const viaduct::RoleChange& change) {
    std::printf("%s epoch %llu %s\n", change.active ? "took-over" : "stepped-down",
                static_cast<unsigned long long>(change.epoch), change.reason.c_str());
    std::fflush(stdout);
  });
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::printf("serving %s at %s as %s, library %s\nservice-key %s\n", options.name.c_str(),
              (*server)->address().c_str(), (*server)->active() ? "active" : "passive",
              viaduct::version(), (*server)->service_key().c_str());
  std::fflush(stdout);
  (*server)->run(g_stop);
  std::printf("stopped with %zu keys\n", store.size());
  return 0;
}
