// transport::Address::parse on arbitrary text. Property: an address that parses prints as text
// that parses again, to the same address (a URI from `viaduct lookup` or a log line must be usable
// as it is).
#include <string_view>

#include "tests/fuzz/fuzz_check.hpp"
#include "transport/address.hpp"

using viaduct::transport::Address;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto address = Address::parse(text);
  if (!address.is_ok()) return 0;

  FUZZ_CHECK(!address.value().host.empty());
  auto printed = address.value().to_string();
  auto again = Address::parse(printed);
  if (!again.is_ok()) {
    std::fprintf(stderr, "'%s' parses, but its to_string() '%s' does not: %s\n",
                 std::string(text).c_str(), printed.c_str(), again.status().message().c_str());
  }
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK(again.value() == address.value());
  return 0;
}
