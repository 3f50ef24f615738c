#include "transport/domain.hpp"

#include "transport/fake/fake_domain.hpp"
#include "transport/ofi/ofi_domain.hpp"
#include "transport/provider_signals.hpp"
#include "transport/tunables.hpp"
#include "transport/verbs/verbs_domain.hpp"

namespace viaduct::transport {

Domain::Domain()
    : outgoing_staging_(tunables::domain_max_staging_bytes),
      incoming_staging_(tunables::domain_max_staging_bytes) {}

Result<std::unique_ptr<Domain>> Domain::open(const Address& address) {
  restore_signals_taken_by_providers();
  switch (address.backend) {
    case BackendKind::kOfiTcp:
    case BackendKind::kOfiVerbs:
      return ofi::open_domain(address);
    case BackendKind::kVerbs:
      return verbs::open_domain(address);
    case BackendKind::kFake:
      return fake::open_domain(address);
  }
  return Status(Code::kInvalidArgument, "unknown back end");
}

Result<std::unique_ptr<VirtualInterface>> ConnectionRequest::start_accept(
    std::span<const std::byte> reply, const ViOptions& options) {
  return accept(reply, options, static_cast<int>(tunables::connect_timeout_ms.get()));
}

std::vector<BackendReport> probe_backends() {
  std::vector<BackendReport> reports;
  reports.push_back(ofi::probe(BackendKind::kOfiTcp));
  reports.push_back(ofi::probe(BackendKind::kOfiVerbs));
  reports.push_back(verbs::probe());
  return reports;
}

std::uint32_t ViOptions::resolved_send_depth() const {
  return send_queue_depth != 0 ? send_queue_depth
                               : static_cast<std::uint32_t>(tunables::vi_send_queue_depth.get());
}

std::uint32_t ViOptions::resolved_recv_depth() const {
  return recv_queue_depth != 0 ? recv_queue_depth
                               : static_cast<std::uint32_t>(tunables::vi_recv_queue_depth.get());
}

std::string_view vi_state_name(ViState s) {
  switch (s) {
    case ViState::kIdle:
      return "idle";
    case ViState::kConnecting:
      return "connecting";
    case ViState::kConnected:
      return "connected";
    case ViState::kError:
      return "error";
    case ViState::kClosed:
      return "closed";
  }
  return "?";
}

std::string_view opcode_name(Opcode op) {
  switch (op) {
    case Opcode::kSend:
      return "send";
    case Opcode::kRecv:
      return "recv";
    case Opcode::kRdmaWrite:
      return "rdma_write";
    case Opcode::kRdmaRead:
      return "rdma_read";
  }
  return "?";
}

}  // namespace viaduct::transport
