// The library's log: a level (VIADUCT_LOG_LEVEL at start-up) and a replaceable handler.
#include "transport/log.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace viaduct {
namespace {

constexpr std::string_view kNames[] = {"trace", "debug", "info", "warn", "error", "off"};

// The level VIADUCT_LOG_LEVEL asks for; a value that names no level is reported (once, on
// stderr, naming it) and the default kept: a misspelt setting must not silently change nothing.
LogLevel level_from_environment() {
  const char* text = std::getenv("VIADUCT_LOG_LEVEL");
  if (text == nullptr || *text == '\0') return LogLevel::kWarn;
  if (auto level = parse_log_level(text)) return *level;
  std::fprintf(stderr,
               "viaduct: VIADUCT_LOG_LEVEL=%s is not a level (trace, debug, info, warn, error, "
               "off): using warn\n",
               text);
  return LogLevel::kWarn;
}

std::atomic<int>& current_level() {
  static std::atomic<int> level{static_cast<int>(level_from_environment())};
  return level;
}

struct HandlerSlot {
  std::mutex mutex;
  LogHandler handler;  // empty: stderr
};

HandlerSlot& handler_slot() {
  static HandlerSlot slot;
  return slot;
}

}  // namespace

std::string_view log_level_name(LogLevel level) {
  auto index = static_cast<std::size_t>(level);
  return index < std::size(kNames) ? kNames[index] : "?";
}

std::optional<LogLevel> parse_log_level(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "warning") lower = "warn";
  for (std::size_t i = 0; i < std::size(kNames); ++i) {
    if (lower == kNames[i]) return static_cast<LogLevel>(i);
  }
  return std::nullopt;
}

void set_log_handler(LogHandler handler) {
  auto& slot = handler_slot();
  std::lock_guard lock(slot.mutex);
  slot.handler = std::move(handler);
}

void set_log_level(LogLevel level) {
  current_level().store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel log_level() {
  return static_cast<LogLevel>(current_level().load(std::memory_order_relaxed));
}

namespace logging {

bool enabled(LogLevel level) {
  return level != LogLevel::kOff &&
         static_cast<int>(level) >= current_level().load(std::memory_order_relaxed);
}

void write(LogLevel level, std::string_view message) {
  auto& slot = handler_slot();
  // Held while the handler runs: a handler replaced meanwhile is never called after
  // set_log_handler returned (an application may free what its old handler used).
  std::lock_guard lock(slot.mutex);
  if (slot.handler) {
    slot.handler(level, message);
    return;
  }
  std::fprintf(stderr, "viaduct: [%.*s] %.*s\n", static_cast<int>(log_level_name(level).size()),
               log_level_name(level).data(), static_cast<int>(message.size()), message.data());
}

}  // namespace logging
}  // namespace viaduct
