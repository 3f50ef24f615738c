// A tunable set for one test, put back to its default when the scope ends (a failed ASSERT returns
// early: the next test must still see the default).
#pragma once

#include <cstdint>

#include "transport/tunable.hpp"

namespace viaduct::testing {

class ScopedTunable {
 public:
  ScopedTunable(Tunable& tunable, std::int64_t value)
      : tunable_(tunable), set_(tunable.set(value).is_ok()) {}
  ~ScopedTunable() { (void)tunable_.set(tunable_.default_value()); }
  ScopedTunable(const ScopedTunable&) = delete;
  ScopedTunable& operator=(const ScopedTunable&) = delete;
  // False if the value was refused (out of the tunable's range).
  [[nodiscard]] bool ok() const { return set_; }

 private:
  Tunable& tunable_;
  bool set_;
};

}  // namespace viaduct::testing
