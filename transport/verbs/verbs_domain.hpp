// Verbs back end: librdmacm for connection management, libibverbs RC queue pairs for data.
#pragma once

#include <memory>

#include "transport/domain.hpp"

namespace viaduct::transport::verbs {

Result<std::unique_ptr<Domain>> open_domain(const Address& address);
BackendReport probe();

}  // namespace viaduct::transport::verbs
