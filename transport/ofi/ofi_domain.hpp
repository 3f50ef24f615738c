// libfabric back end (FI_EP_MSG): `tcp` provider everywhere, `verbs` provider where RDMA exists.
#pragma once

#include <memory>

#include "transport/domain.hpp"

namespace viaduct::transport::ofi {

Result<std::unique_ptr<Domain>> open_domain(const Address& address);
BackendReport probe(BackendKind kind);

}  // namespace viaduct::transport::ofi
