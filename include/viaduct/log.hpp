// What the library has to say: role changes, takeovers, failovers, refused peers. By default
// lines of level warn and above go to stderr; VIADUCT_LOG_LEVEL (trace, debug, info, warn, error,
// off) sets the level at start-up, set_log_level() at any time. An application with its own
// logging installs a handler and gets every line instead.
#pragma once

#include <functional>
#include <optional>
#include <string_view>

#include <viaduct/export.hpp>

namespace viaduct {

enum class LogLevel : int { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

// "trace" ... "off".
VIADUCT_API std::string_view log_level_name(LogLevel level);
// The level named `text` ("warn", "WARN", "warning"); nullopt for anything else.
VIADUCT_API std::optional<LogLevel> parse_log_level(std::string_view text);

// Called for each line at or above the level, from whichever library thread has something to
// say (the serving thread, the partner link, a session's poll): it must be thread-safe and should
// be quick. The message has no trailing newline.
using LogHandler = std::function<void(LogLevel level, std::string_view message)>;

// Replaces the handler; an empty one restores the default (stderr).
VIADUCT_API void set_log_handler(LogHandler handler);
VIADUCT_API void set_log_level(LogLevel level);
VIADUCT_API LogLevel log_level();

}  // namespace viaduct
