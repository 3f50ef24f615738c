#include "tools/bench/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace viaduct::bench {

ChildProcess::ChildProcess(std::vector<std::string> argv) : ChildProcess(std::move(argv), {}) {}

ChildProcess::ChildProcess(std::vector<std::string> argv, const std::string& stderr_path) {
  int out[2];
  if (pipe(out) != 0) return;
  pid_t parent = getpid();
  // PR_SET_PDEATHSIG fires when the forking *thread* ends, not the process: a child started from
  // a short-lived thread (a test's "bring a server back in 300 ms") would be killed at once. So
  // only a child of the main thread, which lives as long as the process, gets it.
  bool from_main_thread = gettid() == parent;
  pid_ = fork();
  if (pid_ == 0) {
    // Dies with its parent: a bench or test killed (or Ctrl-C'd) leaves no server behind. The
    // parent may have died before the prctl: then it is too late to ask, so go now.
    if (from_main_thread) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
    }
    dup2(out[1], STDOUT_FILENO);
    if (!stderr_path.empty()) {
      int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (err >= 0) dup2(err, STDERR_FILENO);
    }
    close(out[0]);
    close(out[1]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  fd_ = out[0];
  fcntl(fd_, F_SETFL, O_NONBLOCK);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGCONT);  // a test may have left it frozen
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (fd_ >= 0) close(fd_);
}

bool ChildProcess::wait_for(const std::string& text, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (out_.find(text) != std::string::npos) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) {
      if (left == 0) return false;
      continue;
    }
    char buf[512];
    ssize_t n = read(fd_, buf, sizeof(buf));
    if (n == 0) return out_.find(text) != std::string::npos;
    if (n > 0) out_.append(buf, static_cast<std::size_t>(n));
  }
}

const std::string& ChildProcess::output() {
  // Everything waiting in the pipe (the fd is non-blocking): a child that prints faster than a
  // chunk per call must never find its pipe full.
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd_, buf, sizeof(buf));
    if (n <= 0) break;
    out_.append(buf, static_cast<std::size_t>(n));
  }
  return out_;
}

void ChildProcess::signal(int sig) const {
  if (pid_ > 0) kill(pid_, sig);
}

void ChildProcess::kill_hard() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::optional<int> ChildProcess::wait_exit(int timeout_ms) {
  if (exit_status_ || pid_ <= 0) return exit_status_;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = status;
      pid_ = -1;
      return exit_status_;
    }
    if (r < 0 || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::string ChildProcess::thread_report() const {
  if (pid_ <= 0) return "(not running)\n";
  auto first_line = [](const std::filesystem::path& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
  };
  std::ostringstream out;
  std::error_code ec;
  const std::filesystem::path tasks = "/proc/" + std::to_string(pid_) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    // stat: "tid (comm) state ...": the state is the field after the closing parenthesis.
    std::string stat = first_line(task.path() / "stat");
    auto close = stat.rfind(')');
    char state = close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
    std::string syscall = first_line(task.path() / "syscall");
    out << "  thread " << task.path().filename().string() << " " << first_line(task.path() / "comm")
        << " state " << state << " wchan " << first_line(task.path() / "wchan") << " syscall "
        << syscall.substr(0, syscall.find(' ')) << "\n";
  }
  if (ec) out << "  " << tasks.string() << ": " << ec.message() << "\n";
  // The user-space stacks too, where gdb is installed (a developer's machine; CI may lack it).
  if (std::filesystem::exists("/usr/bin/gdb")) {
    std::string command = "timeout 20 /usr/bin/gdb -p " + std::to_string(pid_) +
                          " -batch -nx -ex 'thread apply all bt 25' 2>&1";
    if (FILE* gdb = ::popen(command.c_str(), "r")) {
      char line[512];
      while (std::fgets(line, sizeof line, gdb) != nullptr) {
        if (line[0] == '#' || std::strncmp(line, "Thread", 6) == 0) out << "  " << line;
      }
      ::pclose(gdb);
    }
  }
  return out.str();
}

}  // namespace viaduct::bench
