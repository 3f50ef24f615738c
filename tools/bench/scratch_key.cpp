#include "tools/bench/scratch_key.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace viaduct::bench {

namespace {
struct Scratch {
  std::string dir;
  std::string file;
  cluster::ClusterKey key;
  Scratch() {
    char pattern[] = "/tmp/viaduct-key-XXXXXX";
    if (mkdtemp(pattern) == nullptr) std::abort();
    dir = pattern;
    file = dir + "/cluster.key";
    if (!cluster::ClusterKey::generate(file)) std::abort();
    key = cluster::ClusterKey::load(file).value();
  }
  ~Scratch() {
    ::unlink(file.c_str());
    ::rmdir(dir.c_str());
  }
};
Scratch& scratch() {
  static Scratch s;
  return s;
}
}  // namespace

const std::string& scratch_key_file() {
  return scratch().file;
}
const cluster::ClusterKey& scratch_key() {
  return scratch().key;
}

}  // namespace viaduct::bench
