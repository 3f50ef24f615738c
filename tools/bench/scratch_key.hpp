// A cluster key for tests and benchmarks that start their own servers: one key file per process,
// made on first use in a private temporary directory (mode 0600), removed at exit.
#pragma once

#include <string>

#include "cluster/member_auth.hpp"

namespace viaduct::bench {

const std::string& scratch_key_file();
const cluster::ClusterKey& scratch_key();

}  // namespace viaduct::bench
