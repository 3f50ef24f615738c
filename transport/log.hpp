// The library's own log lines (public side: <viaduct/log.hpp>). A line is formatted only when its
// level is enabled, so a disabled VIADUCT_LOG costs one relaxed load.
#pragma once

#include <sstream>
#include <string_view>

#include <viaduct/log.hpp>

namespace viaduct::logging {

bool enabled(LogLevel level);
void write(LogLevel level, std::string_view message);

}  // namespace viaduct::logging

// VIADUCT_LOG(kInfo, "took over " << name << " epoch " << epoch);
#define VIADUCT_LOG(level, stream_expr)                                               \
  do {                                                                                \
    if (::viaduct::logging::enabled(::viaduct::LogLevel::level)) {                    \
      std::ostringstream viaduct_log_line_;                                           \
      viaduct_log_line_ << stream_expr;                                               \
      ::viaduct::logging::write(::viaduct::LogLevel::level, viaduct_log_line_.str()); \
    }                                                                                 \
  } while (0)
