// The library's own version, fixed when it was built (see include/viaduct/version.hpp).
#include <viaduct/version.hpp>

namespace viaduct {

const char* version() {
  return VIADUCT_VERSION_STRING;
}

}  // namespace viaduct
