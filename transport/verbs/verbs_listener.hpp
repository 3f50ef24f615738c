// rdma_cm listener and the connection requests it hands out.
#pragma once

#include <memory>

#include "transport/domain.hpp"
#include "transport/verbs/verbs_domain_core.hpp"

namespace viaduct::transport::verbs {

Result<std::unique_ptr<Listener>> make_listener(std::shared_ptr<DomainCore> core,
                                                const Address& local);

}  // namespace viaduct::transport::verbs
