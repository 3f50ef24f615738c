// What every object of one verbs domain shares: the device context and the protection domain.
// MRs, listeners and VIs hold it by shared_ptr, so the PD outlives every MR and QP made on it
// whatever order the caller destroys things in.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "transport/verbs/verbs_resources.hpp"

namespace viaduct::transport::verbs {

struct DomainCore {
  // Declared in creation order: destroyed PD first, then the id that holds the device open,
  // then its channel.
  EventChannelPtr anchor_channel;
  CmIdPtr anchor_id;
  ibv_context* context = nullptr;
  PdPtr pd;
  // Outstanding RDMA reads per QP, as the device allows (needed on both sides for kRdmaRead).
  std::uint8_t responder_resources = 1;
  std::uint8_t initiator_depth = 1;
};

// Connection parameters for rdma_connect / rdma_accept with the transport tunables applied.
rdma_conn_param connection_parameters(const DomainCore& core, std::span<const std::byte> data);

}  // namespace viaduct::transport::verbs
