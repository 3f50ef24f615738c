// A child process (fork/exec) whose stdout lines can be waited for; killed (SIGCONT, then
// SIGKILL) and reaped when the object dies, and killed by the kernel when this process dies
// (PR_SET_PDEATHSIG; only for children started from the main thread, see the .cpp). Used by the
// failover bench and the process tests.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace viaduct::bench {

class ChildProcess {
 public:
  // argv[0] is the program path.
  explicit ChildProcess(std::vector<std::string> argv);
  // The same, with the child's stderr appended to the file `stderr_path` (kept apart from ours).
  ChildProcess(std::vector<std::string> argv, const std::string& stderr_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Waits until stdout so far contains `text`; false after timeout_ms or if the child closed it.
  bool wait_for(const std::string& text, int timeout_ms);
  // Everything printed so far (reads what is waiting, without blocking).
  const std::string& output();
  void signal(int sig) const;
  void kill_hard();  // SIGKILL and reap now
  // The child's wait status once it has exited, reaped here (waiting up to timeout_ms); nullopt
  // while it still runs. A fault run tells a crash (SIGSEGV, exit 1) from its own SIGKILL by it.
  std::optional<int> wait_exit(int timeout_ms);
  [[nodiscard]] pid_t pid() const { return pid_; }
  // Where each of the child's threads is, from /proc (name, state, kernel wait channel, system
  // call): for a test's failure message when the child stopped doing what it should.
  [[nodiscard]] std::string thread_report() const;

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string out_;
  std::optional<int> exit_status_;
};

}  // namespace viaduct::bench
