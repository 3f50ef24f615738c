// Tunables: every knob declared once, with its unit in its name, its default and its help text.
//
// Modelled on libfabric's fi_param_define + `fi_info -e`: a tunable is a namespace-scope object in
// the file of the module that uses it, registered in one process-wide table that `viaduct info`
// lists. A value comes, in order of precedence, from Tunable::set (CLI --set, config file), the
// environment variable VIADUCT_<NAME> (upper case), or the default.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "transport/status.hpp"

namespace viaduct {

class Tunable {
 public:
  // `name` must carry its unit (keepalive_interval_ms, eager_threshold_bytes, ...).
  Tunable(std::string_view module, std::string_view name, std::int64_t default_value,
          std::int64_t min_value, std::int64_t max_value, std::string_view help);
  Tunable(const Tunable&) = delete;
  Tunable& operator=(const Tunable&) = delete;

  // Cheap: one relaxed atomic load after the first call, so it may sit on a set-up path.
  [[nodiscard]] std::int64_t get() const;
  Status set(std::int64_t value);

  [[nodiscard]] std::string_view module() const { return module_; }
  [[nodiscard]] std::string_view name() const { return name_; }
  [[nodiscard]] std::int64_t default_value() const { return default_; }
  [[nodiscard]] std::int64_t min_value() const { return min_; }
  [[nodiscard]] std::int64_t max_value() const { return max_; }
  [[nodiscard]] std::string_view help() const { return help_; }
  [[nodiscard]] std::string env_name() const;
  // Where the current value came from: "default", "env", "set".
  [[nodiscard]] std::string_view source() const;

  // All tunables registered in this process, in registration order.
  static const std::vector<Tunable*>& all();
  static Tunable* find(std::string_view name);
  // "name=value"; for CLI --set and config files.
  static Status set_from_string(std::string_view assignment);
  // Checks every VIADUCT_* variable of the environment (as UCX does with UCX_*): a tunable's
  // variable whose value is not an integer in range is an error naming it (it used to be ignored
  // silently); a variable that names no setting (misspelt?) adds a line to `warnings`. The
  // variables of the project's own scripts and tests (VIADUCT_TEST_*, VIADUCT_BUILD_*, ...) and
  // VIADUCT_LOG_LEVEL are known. The tools exit 2 on the error; Server::start and Client::open
  // return it.
  static Status check_environment(std::vector<std::string>* warnings);
  // check_environment for the library's entry points: bad values only (see the .cpp).
  static Status check_environment_for_library();

 private:
  void load_once() const;

  std::string_view module_;
  std::string_view name_;
  std::int64_t default_;
  std::int64_t min_;
  std::int64_t max_;
  std::string_view help_;
  mutable std::atomic<std::int64_t> value_{0};
  mutable std::atomic<int> state_{0};  // 0 unloaded, 1 default, 2 env, 3 set
};

}  // namespace viaduct
