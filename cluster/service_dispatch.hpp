// The serving thread's request router (private to ServiceServer): member requests to the
// partner logic; client requests, while active, to the reply cache, the control operations
// (partner address, identity proof, epoch) or the application, whose answer then waits for the
// passive (cluster/replica_stream.hpp).
#pragma once

#include "cluster/service_server.hpp"

namespace viaduct::cluster {

class ServiceServer::Dispatcher final : public transport::RequestHandler {
 public:
  explicit Dispatcher(ServiceServer* owner) : owner_(owner) {}
  void on_request(transport::Channel& channel, const transport::IncomingRequest& request) override;

 private:
  void answer_control(transport::Channel& channel, std::uint64_t request_id,
                      std::span<const std::byte> op);
  ServiceServer* owner_;
};

}  // namespace viaduct::cluster
