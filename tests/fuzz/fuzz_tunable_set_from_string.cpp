// Tunable::set_from_string ("name=value" from the CLI's --set and config files) on arbitrary text,
// against the transport's real tunables and two of the fuzzer's own (one with a negative range,
// one spanning all of int64). Properties: an accepted value is in range, reads back, and sets
// again from its printed form; a rejected assignment leaves every value as it was.
#include <cerrno>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "transport/tunable.hpp"
#include "transport/tunables.hpp"

namespace {

viaduct::Tunable fuzz_offset_us("fuzz", "fuzz_offset_us", 0, -1000, 1000, "a signed knob");
viaduct::Tunable fuzz_wide_bytes("fuzz", "fuzz_wide_bytes", 0, INT64_MIN, INT64_MAX,
                                 "a knob over all of int64");

std::vector<std::int64_t> snapshot() {
  std::vector<std::int64_t> values;
  for (const viaduct::Tunable* t : viaduct::Tunable::all()) values.push_back(t->get());
  return values;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using viaduct::Tunable;
  // Referenced so that the linker keeps tunables.cpp and its registrations.
  (void)viaduct::transport::tunables::connect_timeout_ms.default_value();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto before = snapshot();
  auto status = Tunable::set_from_string(text);
  if (!status.is_ok()) {
    FUZZ_CHECK(status.code() == viaduct::Code::kInvalidArgument);
    FUZZ_CHECK(snapshot() == before);
    return 0;
  }

  auto eq = text.find('=');
  FUZZ_CHECK(eq != std::string_view::npos);
  Tunable* t = Tunable::find(text.substr(0, eq));
  FUZZ_CHECK(t != nullptr);
  std::int64_t value = t->get();
  FUZZ_CHECK(value >= t->min_value() && value <= t->max_value());
  FUZZ_CHECK(t->source() == "set");
  // Cross-check the accepted text with an independent parser (strtoll is more lenient: it also
  // takes '+' and leading blanks, which set_from_string rejects, so only this direction holds).
  std::string value_text(text.substr(eq + 1));
  errno = 0;
  FUZZ_CHECK(std::strtoll(value_text.c_str(), nullptr, 10) == value && errno == 0);
  std::string printed = std::string(t->name()) + "=" + std::to_string(value);
  FUZZ_CHECK(Tunable::set_from_string(printed).is_ok());
  FUZZ_CHECK(t->get() == value);
  return 0;
}
