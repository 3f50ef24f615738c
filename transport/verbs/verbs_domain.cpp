// Placeholder until the verbs back end lands from its own branch: reports "no device" honestly.
#include "transport/verbs/verbs_domain.hpp"

namespace viaduct::transport::verbs {

Result<std::unique_ptr<Domain>> open_domain(const Address&) {
  return Status(Code::kNotSupported, "verbs back end not built yet");
}

BackendReport probe() { return {BackendKind::kVerbs, false, "verbs back end not built yet", {}}; }

}  // namespace viaduct::transport::verbs
