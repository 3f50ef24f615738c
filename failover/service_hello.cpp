#include "failover/service_hello.hpp"

#include <cstring>

#include "transport/frame.hpp"

namespace viaduct::failover {

using transport::load_le;
using transport::store_le;

std::vector<std::byte> encode_hello_app(const Hello& hello) {
  std::vector<std::byte> out(9 + hello.name.size());
  out[0] = static_cast<std::byte>(hello.kind);
  store_le<std::uint64_t>(out.data() + 1, hello.epoch);
  std::memcpy(out.data() + 9, hello.name.data(), hello.name.size());
  return out;
}

Result<Hello> decode_hello_app(std::span<const std::byte> bytes) {
  if (bytes.size() < 10 || bytes.size() > 9 + kMaxServiceNameBytes) {
    return Status(Code::kMalformed, "service hello of " + std::to_string(bytes.size()) + " bytes");
  }
  Hello h;
  auto kind = static_cast<char>(bytes[0]);
  if (kind != 'C' && kind != 'P' && kind != 'A' && kind != 'S' && kind != 'W') {
    return Status(Code::kMalformed, "unknown hello kind");
  }
  h.kind = static_cast<HelloKind>(kind);
  h.epoch = load_le<std::uint64_t>(bytes.data() + 1);
  h.name.assign(reinterpret_cast<const char*>(bytes.data() + 9), bytes.size() - 9);
  for (char c : h.name) {
    if (c <= 0x20 || c >= 0x7f || c == ';') return Status(Code::kMalformed, "bad service name");
  }
  return h;
}

}  // namespace viaduct::failover
