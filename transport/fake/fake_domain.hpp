// In-process fake back end for protocol unit tests: VIs are pairs of queues in memory, RDMA is a
// memcpy, and a test can break a connection at will. Never the only test of a feature.
#pragma once

#include <memory>

#include "transport/domain.hpp"

namespace viaduct::transport::fake {

Result<std::unique_ptr<Domain>> open_domain(const Address& address);

}  // namespace viaduct::transport::fake
