#include "transport/tunable.hpp"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>

#include <viaduct/log.hpp>

extern char** environ;

namespace viaduct {
namespace {

std::vector<Tunable*>& registry() {
  static std::vector<Tunable*> tunables;
  return tunables;
}

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

bool parse_int(std::string_view text, std::int64_t* out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && ptr == end && !text.empty();
}

}  // namespace

Tunable::Tunable(std::string_view module, std::string_view name, std::int64_t default_value,
                 std::int64_t min_value, std::int64_t max_value, std::string_view help)
    : module_(module),
      name_(name),
      default_(default_value),
      min_(min_value),
      max_(max_value),
      help_(help) {
  std::lock_guard lock(registry_mutex());
  registry().push_back(this);
}

std::string Tunable::env_name() const {
  std::string env = "VIADUCT_";
  for (char c : name_)
    env.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return env;
}

void Tunable::load_once() const {
  if (state_.load(std::memory_order_acquire) != 0) return;
  std::int64_t v = default_;
  int state = 1;
  if (const char* env = std::getenv(env_name().c_str()); env != nullptr) {
    std::int64_t parsed = 0;
    if (parse_int(env, &parsed) && parsed >= min_ && parsed <= max_) {
      v = parsed;
      state = 2;
    }
  }
  int expected = 0;
  value_.store(v, std::memory_order_relaxed);
  state_.compare_exchange_strong(expected, state, std::memory_order_acq_rel);
}

std::int64_t Tunable::get() const {
  load_once();
  return value_.load(std::memory_order_relaxed);
}

Status Tunable::set(std::int64_t value) {
  if (value < min_ || value > max_) {
    return {Code::kInvalidArgument, std::string(name_) + " must be in [" + std::to_string(min_) +
                                        ", " + std::to_string(max_) + "], got " +
                                        std::to_string(value)};
  }
  value_.store(value, std::memory_order_relaxed);
  state_.store(3, std::memory_order_release);
  return Status::ok();
}

std::string_view Tunable::source() const {
  load_once();
  switch (state_.load(std::memory_order_acquire)) {
    case 2:
      return "env";
    case 3:
      return "set";
    default:
      return "default";
  }
}

const std::vector<Tunable*>& Tunable::all() {
  return registry();
}

Tunable* Tunable::find(std::string_view name) {
  for (Tunable* t : registry()) {
    if (t->name() == name) return t;
  }
  return nullptr;
}

Status Tunable::set_from_string(std::string_view assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos) {
    return {Code::kInvalidArgument, "expected name=value, got '" + std::string(assignment) + "'"};
  }
  auto name = assignment.substr(0, eq);
  auto text = assignment.substr(eq + 1);
  Tunable* t = find(name);
  if (t == nullptr) {
    return {Code::kInvalidArgument,
            "unknown tunable '" + std::string(name) + "' (see `viaduct info`)"};
  }
  std::int64_t value = 0;
  if (!parse_int(text, &value)) {
    return {Code::kInvalidArgument,
            "tunable " + std::string(name) + ": '" + std::string(text) + "' is not an integer"};
  }
  return t->set(value);
}

namespace {

// VIADUCT_* variables that are not tunables: the log level, and those of the project's scripts,
// tests and build (they reach the test processes' environments).
bool known_non_tunable(std::string_view name) {
  if (name == "VIADUCT_LOG_LEVEL") return true;
  for (std::string_view prefix :
       {"VIADUCT_TEST_", "VIADUCT_BUILD_", "VIADUCT_CMAKE_", "VIADUCT_SANITIZE", "VIADUCT_FUZZ",
        "VIADUCT_RXE", "VIADUCT_VERBS_TEST_", "VIADUCT_EXAMPLES_"}) {
    if (name.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

}  // namespace

Status Tunable::check_environment(std::vector<std::string>* warnings) {
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view assignment(*entry);
    if (assignment.substr(0, 8) != "VIADUCT_") continue;
    auto eq = assignment.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = assignment.substr(0, eq);
    std::string_view text = assignment.substr(eq + 1);
    if (name == "VIADUCT_LOG_LEVEL") {
      if (!text.empty() && !parse_log_level(text)) {
        return {Code::kInvalidArgument, std::string(assignment) +
                                            ": not a log level (trace, debug, info, warn, "
                                            "error, off)"};
      }
      continue;
    }
    const Tunable* tunable = nullptr;
    for (const Tunable* t : registry()) {
      if (t->env_name() == name) tunable = t;
    }
    if (tunable == nullptr) {
      if (!known_non_tunable(name) && warnings != nullptr) {
        warnings->push_back(std::string(name) +
                            " names no viaduct setting (misspelt? `viaduct info` lists them): "
                            "ignored");
      }
      continue;
    }
    std::int64_t value = 0;
    if (!parse_int(text, &value)) {
      return {Code::kInvalidArgument, std::string(assignment) + ": not an integer"};
    }
    if (value < tunable->min_ || value > tunable->max_) {
      return {Code::kInvalidArgument, std::string(assignment) + ": must be in [" +
                                          std::to_string(tunable->min_) + ", " +
                                          std::to_string(tunable->max_) + "]"};
    }
  }
  return Status::ok();
}

Status Tunable::check_environment_for_library() {
  // Values only: an application linked with the static library registers the tunables of the
  // modules it uses, so a name it does not know may be another module's (the tools, which link
  // every module, warn about unknown names).
  return check_environment(nullptr);
}

}  // namespace viaduct
