// Monotonic time as nanoseconds, for deadlines and liveness (one definition for every module).
#pragma once

#include <chrono>
#include <cstdint>

namespace viaduct {

inline std::int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace viaduct
