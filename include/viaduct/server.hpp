// One server of a named, replicated service: an active/passive pair of these serves a name.
//
//   MyService service;                          // a viaduct::Service (<viaduct/service.hpp>)
//   auto server = viaduct::Server::start({.name = "KV", .role = viaduct::ServerRole::kActive,
//       .listen = "ofi+tcp://10.0.0.1:7000", .partner = "ofi+tcp://10.0.0.2:7000",
//       .lookup = "10.0.0.1:7100", .cluster_key_file = "/etc/viaduct/cluster.key"}, service);
//   (*server)->run(stop);                       // serves until `stop` becomes true
//
// The active serves clients and replicates every request it executed to the passive before
// answering; the passive pings it and takes over (with a higher epoch) once it stops answering,
// provided it holds everything the active acknowledged. Each answers name lookups (UDP) only while
// active. Partners prove to each other that they hold the cluster secret; the active proves to
// clients that it serves the name with a key derived from it.
//
// Threading and ownership: run() (or repeated run_once()) is the serving thread: it calls the
// Service and the callbacks. The server also runs a partner-link thread (pings, at real-time
// priority when permitted) and a connector thread. The Service must outlive the Server.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <viaduct/export.hpp>
#include <viaduct/service.hpp>
#include <viaduct/status.hpp>

namespace viaduct {

enum class ServerRole : std::uint8_t { kPassive, kActive };

struct ServerOptions {
  std::string name;  // the service name, 1..31 bytes
  ServerRole role = ServerRole::kPassive;
  // The epoch an active starts at. 1 for a fresh pair; after both partners were lost, start above
  // the last epoch clients saw (Client::epoch(), on_role_change) so that they follow.
  std::uint64_t epoch = 1;
  std::string listen;   // transport address: "ofi+tcp://HOST:PORT", "verbs://HOST:PORT"
  std::string partner;  // the partner's `listen`; empty: a server without a partner
  std::string lookup;   // UDP "HOST:PORT" of the lookup responder; empty: none
  // The cluster secret (`viaduct keygen FILE`, mode 0600): required with a partner, and to prove
  // the service's identity to clients.
  std::string cluster_key_file;
};

// A takeover (active = true) or a step-down.
struct RoleChange {
  bool active = false;
  std::uint64_t epoch = 0;
  std::string reason;  // why it took over ("partner-silent-ms 31"); empty for a step-down
};

class VIADUCT_API Server {
 public:
  // Binds the listener and the lookup responder and starts the partner link. `service` is not
  // owned and must outlive the server.
  static Result<std::unique_ptr<Server>> start(const ServerOptions& options, Service& service);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until `stop` becomes true (set it from any thread, e.g. a signal handler's flag).
  void run(const std::atomic<bool>& stop);
  // One round, for an application with its own loop: an active polls without blocking, a passive
  // may wait up to `passive_timeout_ms`. Returns the events handled.
  std::size_t run_once(int passive_timeout_ms = 0);

  // Called on the serving thread after each takeover or step-down.
  void on_role_change(std::function<void(const RoleChange&)> fn);
  // Other events an operator wants to see, one line each ("serving-alone KV partner-gone").
  void on_notice(std::function<void(std::string_view)> fn);

  [[nodiscard]] bool active() const;
  [[nodiscard]] std::uint64_t epoch() const;
  // A passive holds everything the active acknowledged (always true for an active).
  [[nodiscard]] bool in_sync() const;
  [[nodiscard]] std::string address() const;         // where clients connect
  [[nodiscard]] std::string lookup_address() const;  // UDP HOST:PORT, empty when none
  // The service's public key (hex) that clients pin (ClientOptions::service_key); empty without
  // a cluster key.
  [[nodiscard]] std::string service_key() const;
  // Operator's decision (any thread): take over although out of sync, accepting the loss of
  // what the active may have acknowledged alone.
  void promote();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace viaduct
