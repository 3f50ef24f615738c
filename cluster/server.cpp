// viaduct::Server (<viaduct/server.hpp>): the public face of cluster::ServiceServer. It owns the
// cluster key the server borrows, and turns the role vocabulary into the public one.
#include <viaduct/server.hpp>

#include <optional>
#include <utility>

#include "cluster/member_auth.hpp"
#include "cluster/service_server.hpp"
#include "failover/server_proof.hpp"
#include "failover/udp_socket.hpp"
#include "transport/tunable.hpp"

namespace viaduct {

// Hidden: an exported class's nested types are exported with it otherwise.
struct [[gnu::visibility("hidden")]] Server::Impl {
  std::optional<cluster::ClusterKey> key;  // declared first: the server borrows it
  std::string name;
  std::unique_ptr<cluster::ServiceServer> server;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::start(const ServerOptions& options, Service& service) {
  VIADUCT_RETURN_IF_ERROR(Tunable::check_environment_for_library());
  auto impl = std::make_unique<Impl>();
  impl->name = options.name;
  cluster::ServiceConfig config;
  config.name = options.name;
  config.initial_role =
      options.role == ServerRole::kActive ? cluster::Role::kActive : cluster::Role::kPassive;
  if (options.epoch == 0) return Status(Code::kInvalidArgument, "epoch must be at least 1");
  config.initial_epoch = options.epoch;
  config.listen_uri = options.listen;
  config.partner_uri = options.partner;
  if (options.lookup.empty()) {
    config.lookup_enabled = false;
  } else {
    auto endpoint = failover::UdpEndpoint::parse(options.lookup);
    if (!endpoint) return Status(Code::kInvalidArgument, "lookup: " + endpoint.status().message());
    config.lookup_host = endpoint->host();
    config.lookup_port = endpoint->port();
  }
  if (!options.cluster_key_file.empty()) {
    auto key = cluster::ClusterKey::load(options.cluster_key_file);
    if (!key) return key.status();
    impl->key = std::move(key.value());
    config.cluster_key = &*impl->key;
  }
  auto server = cluster::ServiceServer::start(config, &service);
  if (!server) return server.status();
  impl->server = std::move(server.value());
  return std::unique_ptr<Server>(new Server(std::move(impl)));  // private constructor
}

void Server::run(const std::atomic<bool>& stop) {
  impl_->server->run(stop);
}

std::size_t Server::run_once(int passive_timeout_ms) {
  return impl_->server->run_once(passive_timeout_ms);
}

void Server::on_role_change(std::function<void(const RoleChange&)> fn) {
  if (!fn) {
    impl_->server->on_role_change = nullptr;
    return;
  }
  cluster::ServiceServer* server = impl_->server.get();
  server->on_role_change = [fn = std::move(fn), server](cluster::RoleEvent event,
                                                        const cluster::RoleState& state) {
    bool took_over = event == cluster::RoleEvent::kTookOver;
    fn(RoleChange{took_over, state.epoch, took_over ? server->takeover_reason() : std::string()});
  };
}

void Server::on_notice(std::function<void(std::string_view)> fn) {
  if (!fn) {
    impl_->server->on_notice = nullptr;
    return;
  }
  impl_->server->on_notice = [fn = std::move(fn)](const std::string& line) { fn(line); };
}

bool Server::active() const {
  return impl_->server->role().role == cluster::Role::kActive;
}
std::uint64_t Server::epoch() const {
  return impl_->server->role().epoch;
}
bool Server::in_sync() const {
  return impl_->server->in_sync();
}
std::string Server::address() const {
  return impl_->server->address().to_string();
}
std::string Server::lookup_address() const {
  const auto* responder = impl_->server->responder();
  return responder != nullptr ? responder->address().to_string() : std::string();
}
std::string Server::service_key() const {
  if (!impl_->key) return {};
  return failover::public_key_hex(impl_->key->service_public_key(impl_->name));
}
void Server::promote() {
  impl_->server->promote();
}

}  // namespace viaduct
