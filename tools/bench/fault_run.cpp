#include "tools/bench/fault_run.hpp"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <sstream>
#include <string_view>
#include <thread>

#include "failover/lookup_client.hpp"
#include "failover/session.hpp"
#include "tools/bench/child_process.hpp"
#include "tools/bench/scratch_key.hpp"
#include "transport/clock.hpp"
#include "transport/polite_spin.hpp"

namespace viaduct::bench {
namespace {

constexpr const char* kName = "FAULTS";
constexpr int kStartTimeoutMs = 5000;  // a `viaduct serve` prints "serving" well within this
constexpr int kDrainMs = 15000;  // > failover_call_deadline_ms: every call in flight completes

// ---------------------------------------------------------------------------------------------
// The faults. Each is drawn at random among the kinds the pair's state allows.

enum class FaultKind {
  kKill,                     // SIGKILL of A or B
  kFreeze,                   // SIGSTOP of A or B for min..max_freeze_ms, then SIGCONT
  kFreezePassiveKillActive,  // the passive frozen, then (while frozen) the active killed
  kKillBoth,                 // SIGKILL of both, back to back
  kKillThenKill,             // SIGKILL of one, load, SIGKILL of the other before it restarts
};
constexpr std::array kAllKinds{FaultKind::kKill, FaultKind::kFreeze,
                               FaultKind::kFreezePassiveKillActive, FaultKind::kKillBoth,
                               FaultKind::kKillThenKill};

std::string_view kind_name(FaultKind k) {
  switch (k) {
    case FaultKind::kKill:
      return "kill";
    case FaultKind::kFreeze:
      return "freeze";
    case FaultKind::kFreezePassiveKillActive:
      return "freeze-passive-kill-active";
    case FaultKind::kKillBoth:
      return "kill-both";
    case FaultKind::kKillThenKill:
      return "kill-then-kill";
  }
  return "?";
}

bool needs_both(FaultKind k) {
  return k == FaultKind::kFreezePassiveKillActive || k == FaultKind::kKillBoth ||
         k == FaultKind::kKillThenKill;
}

// ---------------------------------------------------------------------------------------------
// The client load: one session per thread ("add 1" requests, `depth` in flight), because a
// session's failover blocks its poll() and must not stall the others.

struct Ack {
  std::int64_t at_ns;
  std::uint64_t total;
};

struct Load;
struct Slot {
  Load* load = nullptr;
  bool busy = false;
};

struct Load {
  std::vector<failover::UdpEndpoint> lookup;
  std::vector<Slot> slots;
  std::vector<Ack> acks;                          // this thread's only, until joined
  std::map<std::string, std::uint64_t> errors;    // message → count
  std::uint64_t error_count = 0, unanswered = 0;  // unanswered: still waiting after the drain
  std::uint64_t double_callbacks = 0;             // a request answered twice (a session bug)
  std::uint64_t failovers = 0;
  std::string open_error;
  std::atomic<std::uint64_t> acked_live{0}, errors_live{0};  // for the progress lines
};

void on_answer(void* user, const transport::Response& r) {
  auto* slot = static_cast<Slot*>(user);
  Load& l = *slot->load;
  if (!slot->busy) {
    ++l.double_callbacks;
    return;
  }
  slot->busy = false;
  std::string error;
  if (!r.status) {
    error = r.status.to_string();
  } else if (r.app_status != 0) {
    error = "application status " + std::to_string(r.app_status);
  } else if (r.payload.size() != 8) {
    error = "answer of " + std::to_string(r.payload.size()) + " bytes, not 8";
  }
  if (!error.empty()) {
    // A call that completed with an error: it may or may not have been executed.
    ++l.errors[error];
    ++l.error_count;
    l.errors_live.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::uint64_t total = 0;
  std::memcpy(&total, r.payload.data(), 8);
  l.acks.push_back({steady_now_ns(), total});
  l.acked_live.fetch_add(1, std::memory_order_relaxed);
}

void run_load(Load& l, const std::atomic<bool>& stop) {
  auto session =
      failover::Session::open({kName, l.lookup, static_cast<std::uint32_t>(l.slots.size()),
                               scratch_key().service_public_key(kName)});
  if (!session) {
    l.open_error = session.status().to_string();
    return;
  }
  failover::Session& s = *session.value();
  const std::uint64_t one = 1;
  auto request = std::as_bytes(std::span(&one, 1));
  PoliteSpin spin;
  std::int64_t drain_until = 0;
  for (;;) {
    bool stopping = stop.load(std::memory_order_relaxed);
    if (stopping && drain_until == 0) drain_until = steady_now_ns() + kDrainMs * 1'000'000LL;
    bool waiting = false;
    for (auto& slot : l.slots) {
      if (slot.busy) {
        waiting = true;
        continue;
      }
      if (stopping) continue;
      slot.busy = true;
      if (!s.call_async(request, on_answer, &slot).is_ok()) {
        slot.busy = false;
        break;
      }
      waiting = true;
    }
    if (!waiting) break;
    if (stopping && steady_now_ns() > drain_until) {
      for (const auto& slot : l.slots) l.unanswered += slot.busy ? 1 : 0;
      break;
    }
    spin.after_poll(s.poll());
  }
  l.failovers = s.failovers();
}

// ---------------------------------------------------------------------------------------------
// The servers: A and B, each a `viaduct serve --service counter` restarted in place (same
// address, same arguments) after it was killed.

enum class ServerState { kRunning, kFrozen, kDead };

std::string_view state_name(ServerState s) {
  switch (s) {
    case ServerState::kRunning:
      return "running";
    case ServerState::kFrozen:
      return "frozen";
    case ServerState::kDead:
      return "dead";
  }
  return "?";
}

// The role a server last announced on stdout: its "serving ... role R" line, then "took-over"
// and "stepped-down" lines. A frozen server's announcement may be stale; that is fine for
// reporting which faults hit the active.
std::string announced_role(const std::string& out) {
  std::string role = "unknown";
  std::size_t pos = 0;
  for (;;) {
    std::size_t end = out.find('\n', pos);
    if (end == std::string::npos) break;
    std::string_view line(out.data() + pos, end - pos);
    if (line.starts_with("serving ")) {
      if (auto r = line.find(" role "); r != std::string_view::npos) {
        auto value = line.substr(r + 6);
        role = std::string(value.substr(0, value.find(' ')));
      }
    } else if (line.starts_with("took-over ")) {
      role = "active";
    } else if (line.starts_with("stepped-down ")) {
      role = "passive";
    }
    pos = end + 1;
  }
  return role;
}

std::string last_lines(const std::string& text, std::size_t n) {
  std::size_t begin = text.size();
  if (begin > 0 && text[begin - 1] == '\n') --begin;  // the last line's own newline
  for (std::size_t lines = 0; begin > 0 && lines < n;) {
    if (text[--begin] == '\n' && ++lines == n) ++begin;
  }
  return text.substr(begin);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string("killed by SIG") +
           (name != nullptr ? name : std::to_string(WTERMSIG(status)));
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "wait status " + std::to_string(status);
}

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t pos = 0;
  while (pos <= dirs.size()) {
    std::size_t colon = dirs.find(':', pos);
    std::string dir =
        dirs.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  return {};
}

struct Server {
  char label = 'A';
  std::string uri, partner_uri, lookup;
  std::unique_ptr<ChildProcess> proc;
  ServerState state = ServerState::kDead;
  int starts = 0;
};

struct Crash {
  char label;
  int start;  // which start of that server (1: the first)
  std::string how, stdout_tail, stderr_tail;
};

struct Event {
  std::int64_t at_ns;   // when it began
  std::int64_t end_ns;  // and ended (a freeze, a double fault and a restart take a while)
  std::string kind;     // a fault kind, or "restart"
  std::string detail;
  bool hit_active = false;
};

class FaultRun {
 public:
  FaultRun(const FaultRunOptions& o, std::uint64_t seed, const std::atomic<bool>& interrupted)
      : o_(o), seed_(seed), rng_(seed), interrupted_(interrupted) {}
  int run();

 private:
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  double elapsed_s() const { return static_cast<double>(steady_now_ns() - start_ns_) / 1e9; }
  bool out_of_time() const { return steady_now_ns() >= fault_deadline_ns_ || interrupted_.load(); }
  void sleep_ms(int ms) const;
  std::string stderr_path(const Server& s) const {
    return log_dir_ + "/" + s.label + "." + std::to_string(s.starts) + ".stderr";
  }
  bool start(Server& s, const char* role);
  void kill(Server& s);
  void freeze(Server& s);
  void thaw(Server& s);
  void record_crash(Server& s, int status, const std::string& when);
  void save_stdout(Server& s);  // its role lines, beside its stderr in the log directory
  void check_crashes();
  void restart_dead(bool all);
  std::string role_of(Server& s) {
    return s.state == ServerState::kDead ? "dead" : announced_role(s.proc->output());
  }
  void inject(FaultKind kind);
  bool wait_for_active(std::int64_t until_ns);
  std::optional<std::uint64_t> read_final_total(std::int64_t until_ns, int attempts,
                                                std::string* why);
  void start_hog();
  void stop_hog();

  const FaultRunOptions& o_;
  std::uint64_t seed_;
  std::mt19937_64 rng_;
  const std::atomic<bool>& interrupted_;
  std::string log_dir_;
  std::array<Server, 2> servers_;
  std::vector<FaultKind> kinds_;
  std::vector<Crash> crashes_;
  std::vector<Event> events_;
  std::map<std::string, int> faults_by_kind_;
  int faults_ = 0, hit_active_ = 0, restarts_ = 0;
  std::unique_ptr<ChildProcess> hog_;
  std::int64_t start_ns_ = 0, fault_deadline_ns_ = 0, end_ns_ = 0;
};

void FaultRun::sleep_ms(int ms) const {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

bool FaultRun::start(Server& s, const char* role) {
  ++s.starts;
  std::vector<std::string> argv{o_.tool,    "serve",  "--service",     "counter",
                                "--name",   kName,    "--role",        role,
                                "--listen", s.uri,    "--partner",     s.partner_uri,
                                "--lookup", s.lookup, "--cluster-key", scratch_key_file()};
  argv.insert(argv.end(), o_.server_args.begin(), o_.server_args.end());
  s.proc = std::make_unique<ChildProcess>(argv, stderr_path(s));
  s.state = ServerState::kRunning;
  if (s.proc->wait_for("serving ", kStartTimeoutMs)) return true;
  if (auto status = s.proc->wait_exit(100)) {
    record_crash(s, *status, "before serving");
  } else {
    crashes_.push_back({s.label, s.starts, "no 'serving' line within 5 s",
                        last_lines(s.proc->output(), 10),
                        last_lines(read_file(stderr_path(s)), 10)});
    s.proc->kill_hard();
  }
  s.state = ServerState::kDead;
  return false;
}

void FaultRun::record_crash(Server& s, int status, const std::string& when) {
  crashes_.push_back({s.label, s.starts, describe_status(status) + " " + when,
                      last_lines(s.proc->output(), 10), last_lines(read_file(stderr_path(s)), 10)});
  std::fprintf(stderr, "fault-run: server %c (start %d) %s\n", s.label, s.starts,
               crashes_.back().how.c_str());
}

void FaultRun::kill(Server& s) {
  if (s.state == ServerState::kDead) return;
  s.proc->signal(SIGKILL);
  auto status = s.proc->wait_exit(5000);
  // Died of something else before our SIGKILL arrived: that is a crash.
  if (status && !(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)) {
    record_crash(s, *status, "(found when killing it)");
  }
  if (!status) s.proc->kill_hard();
  s.state = ServerState::kDead;
  save_stdout(s);
}

void FaultRun::save_stdout(Server& s) {
  std::ofstream(log_dir_ + "/" + s.label + "." + std::to_string(s.starts) + ".stdout")
      << s.proc->output();
}

void FaultRun::freeze(Server& s) {
  if (s.state != ServerState::kRunning) return;
  s.proc->signal(SIGSTOP);
  s.state = ServerState::kFrozen;
}

void FaultRun::thaw(Server& s) {
  if (s.state != ServerState::kFrozen) return;
  s.proc->signal(SIGCONT);
  s.state = ServerState::kRunning;
}

// A server that is gone although we did not kill it crashed (SIGSEGV, SIGABRT, exit on its own).
void FaultRun::check_crashes() {
  for (auto& s : servers_) {
    if (s.state == ServerState::kDead) continue;
    if (auto status = s.proc->wait_exit(0)) {
      record_crash(s, *status, "(on its own)");
      s.state = ServerState::kDead;
      save_stdout(s);
    }
  }
}

// Both dead: both restart, one (at random) configured active. One dead: it restarts as passive,
// with --restart-percent chance unless `all` (so a fault sometimes finds a server alone).
void FaultRun::restart_dead(bool all) {
  bool a_dead = servers_[0].state == ServerState::kDead;
  bool b_dead = servers_[1].state == ServerState::kDead;
  auto restart = [&](Server& s, const char* role) {
    events_.push_back({steady_now_ns(), 0, "restart", std::string(1, s.label) + " as " + role});
    ++restarts_;
    (void)start(s, role);
    events_.back().end_ns = steady_now_ns();
  };
  if (a_dead && b_dead) {
    int first = uniform(0, 1);
    restart(servers_[first], "active");
    restart(servers_[1 - first], "passive");
    return;
  }
  for (auto& s : servers_) {
    if (s.state == ServerState::kDead && (all || uniform(1, 100) <= o_.restart_percent))
      restart(s, "passive");
  }
}

void FaultRun::inject(FaultKind kind) {
  Event e{steady_now_ns(), 0, std::string(kind_name(kind)), {}, false};
  std::vector<Server*> live;
  for (auto& s : servers_) {
    if (s.state == ServerState::kRunning) live.push_back(&s);
  }
  auto note = [&](Server& s, const char* what) {
    std::string role = role_of(s);
    if (role == "active") e.hit_active = true;
    if (!e.detail.empty()) e.detail += ", ";
    e.detail += std::string(what) + " " + s.label + " (" + role + ")";
  };
  switch (kind) {
    case FaultKind::kKill: {
      Server& s = *live[static_cast<std::size_t>(uniform(0, static_cast<int>(live.size()) - 1))];
      note(s, "kill");
      kill(s);
      break;
    }
    case FaultKind::kFreeze: {
      Server& s = *live[static_cast<std::size_t>(uniform(0, static_cast<int>(live.size()) - 1))];
      int ms = uniform(o_.min_freeze_ms, o_.max_freeze_ms);
      note(s, ("freeze " + std::to_string(ms) + " ms").c_str());
      freeze(s);
      sleep_ms(ms);
      thaw(s);
      break;
    }
    case FaultKind::kFreezePassiveKillActive: {
      // By the announced roles; if they do not say (both or neither active), at random.
      std::size_t active = static_cast<std::size_t>(uniform(0, 1));
      std::string r0 = role_of(servers_[0]), r1 = role_of(servers_[1]);
      if (r0 == "active" && r1 != "active") active = 0;
      if (r1 == "active" && r0 != "active") active = 1;
      Server& act = servers_[active];
      Server& pas = servers_[1 - active];
      int before = uniform(o_.min_freeze_ms, o_.max_freeze_ms);
      int after = uniform(o_.min_freeze_ms, o_.max_freeze_ms);
      note(pas, ("freeze " + std::to_string(before + after) + " ms").c_str());
      freeze(pas);
      sleep_ms(before);
      note(act, ("kill after " + std::to_string(before) + " ms").c_str());
      kill(act);
      sleep_ms(after);
      thaw(pas);
      break;
    }
    case FaultKind::kKillBoth: {
      std::size_t first = static_cast<std::size_t>(uniform(0, 1));
      note(servers_[first], "kill");
      note(servers_[1 - first], "kill");
      kill(servers_[first]);
      kill(servers_[1 - first]);
      break;
    }
    case FaultKind::kKillThenKill: {
      std::size_t first = static_cast<std::size_t>(uniform(0, 1));
      int gap = uniform(o_.min_freeze_ms, o_.max_freeze_ms);
      note(servers_[first], "kill");
      kill(servers_[first]);
      sleep_ms(gap);
      note(servers_[1 - first], ("kill " + std::to_string(gap) + " ms later").c_str());
      kill(servers_[1 - first]);
      break;
    }
  }
  e.end_ns = steady_now_ns();
  ++faults_;
  ++faults_by_kind_[e.kind];
  if (e.hit_active) ++hit_active_;
  events_.push_back(std::move(e));
}

bool FaultRun::wait_for_active(std::int64_t until_ns) {
  std::vector<failover::UdpEndpoint> lookup;
  for (auto& s : servers_) lookup.push_back(failover::UdpEndpoint::parse(s.lookup).value());
  while (steady_now_ns() < until_ns) {
    if (failover::lookup(kName, lookup, 200)) return true;
    check_crashes();
    restart_dead(true);
    sleep_ms(50);
  }
  return false;
}

// One "add 0" through a fresh session (it has seen no epoch, so no server is stale to it).
std::optional<std::uint64_t> FaultRun::read_final_total(std::int64_t until_ns, int attempts,
                                                        std::string* why) {
  std::vector<failover::UdpEndpoint> lookup;
  for (auto& s : servers_) lookup.push_back(failover::UdpEndpoint::parse(s.lookup).value());
  for (int attempt = 0; attempt < attempts && steady_now_ns() < until_ns; ++attempt) {
    auto session =
        failover::Session::open({kName, lookup, 1, scratch_key().service_public_key(kName)});
    if (!session) {
      *why = session.status().to_string();
      return std::nullopt;
    }
    const std::uint64_t zero = 0;
    std::byte out[8];
    std::uint32_t app_status = 0;
    auto r = session.value()->call(std::as_bytes(std::span(&zero, 1)), out, &app_status);
    if (r && r.value() == 8 && app_status == 0) {
      std::uint64_t total = 0;
      std::memcpy(&total, out, 8);
      return total;
    }
    *why = r ? "answer of " + std::to_string(r.value()) + " bytes, status " +
                   std::to_string(app_status)
             : r.status().to_string();
    check_crashes();
    restart_dead(true);
  }
  return std::nullopt;
}

void FaultRun::start_hog() {
  if (o_.hog_cpus <= 0) return;
  std::string path = find_program("stress-ng");
  if (path.empty()) {
    std::fprintf(stderr, "fault-run: --hog needs stress-ng (apt-get install stress-ng)\n");
    return;
  }
  // Its own timeout too, in case this process dies without stopping it.
  hog_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{path, "--cpu", std::to_string(o_.hog_cpus), "--timeout",
                               std::to_string(o_.max_seconds + 30) + "s", "--quiet"},
      log_dir_ + "/stress-ng.stderr");
}

void FaultRun::stop_hog() {
  if (!hog_) return;
  // SIGINT: stress-ng stops its workers and exits; SIGKILL would orphan them.
  hog_->signal(SIGINT);
  if (!hog_->wait_exit(5000)) hog_->kill_hard();
  hog_.reset();
}

int FaultRun::run() {
  kinds_.clear();
  for (FaultKind k : kAllKinds) {
    if (o_.kinds.empty() ||
        std::find(o_.kinds.begin(), o_.kinds.end(), kind_name(k)) != o_.kinds.end()) {
      kinds_.push_back(k);
    }
  }
  if (kinds_.empty()) {
    std::fprintf(stderr, "fault-run: no fault kinds selected\n");
    return 2;
  }
  log_dir_ = o_.log_dir;
  std::error_code ec;
  if (!log_dir_.empty() && !std::filesystem::create_directories(log_dir_, ec) && ec) {
    std::fprintf(stderr, "fault-run: --log-dir %s: %s\n", log_dir_.c_str(), ec.message().c_str());
    return 2;
  }
  if (log_dir_.empty()) {
    char tmpl[] = "/tmp/viaduct-faults-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::perror("fault-run: mkdtemp");
      return 2;
    }
    log_dir_ = tmpl;
  }
  start_ns_ = steady_now_ns();
  end_ns_ = start_ns_ + o_.max_seconds * 1'000'000'000LL;
  // Leave a quarter of the run (at most 60 s) for bringing a server back and the final read.
  fault_deadline_ns_ = end_ns_ - std::min(60, o_.max_seconds / 4) * 1'000'000'000LL;
  std::printf("fault-run seed=%llu faults=%d sessions=%d depth=%d hog=%d kinds=",
              static_cast<unsigned long long>(seed_), o_.faults, o_.sessions, o_.depth,
              o_.hog_cpus);
  for (std::size_t i = 0; i < kinds_.size(); ++i)
    std::printf("%s%s", i > 0 ? "," : "", std::string(kind_name(kinds_[i])).c_str());
  std::printf(" logs=%s\n", log_dir_.c_str());
  std::fflush(stdout);

  const std::string host = "127.0.0.1";
  for (int i = 0; i < 2; ++i) {
    Server& s = servers_[static_cast<std::size_t>(i)];
    s.label = static_cast<char>('A' + i);
    s.uri = "ofi+tcp://" + host + ":" + std::to_string(o_.base_port + i);
    s.partner_uri = "ofi+tcp://" + host + ":" + std::to_string(o_.base_port + 1 - i);
    s.lookup = host + ":" + std::to_string(o_.base_port + 2 + i);
  }
  start_hog();
  if (!start(servers_[0], "active") || !start(servers_[1], "passive")) {
    std::fprintf(stderr, "fault-run: the pair did not start (ports %d..%d busy?); logs in %s\n",
                 o_.base_port, o_.base_port + 3, log_dir_.c_str());
    stop_hog();
    return 2;
  }
  // Replication up (unless the server args turned it off) and pings exchanged before the load.
  (void)servers_[0].proc->wait_for("replicating to partner", 3000);
  sleep_ms(300);

  std::atomic<bool> stop_load{false};
  std::vector<std::unique_ptr<Load>> loads;
  std::vector<std::thread> threads;
  for (int i = 0; i < o_.sessions; ++i) {
    auto l = std::make_unique<Load>();
    for (auto& s : servers_) l->lookup.push_back(failover::UdpEndpoint::parse(s.lookup).value());
    l->slots.resize(static_cast<std::size_t>(o_.depth));
    for (auto& slot : l->slots) slot.load = l.get();
    l->acks.reserve(1 << 20);
    loads.push_back(std::move(l));
  }
  threads.reserve(loads.size());
  for (auto& l : loads) threads.emplace_back([&l, &stop_load] { run_load(*l, stop_load); });
  auto acked_now = [&] {
    std::uint64_t n = 0;
    for (auto& l : loads) n += l->acked_live.load(std::memory_order_relaxed);
    return n;
  };
  auto errors_now = [&] {
    std::uint64_t n = 0;
    for (auto& l : loads) n += l->errors_live.load(std::memory_order_relaxed);
    return n;
  };

  // The faults, each after a random stretch of load.
  while (faults_ < o_.faults && !out_of_time()) {
    restart_dead(false);
    sleep_ms(uniform(o_.min_load_ms, o_.max_load_ms));
    check_crashes();
    std::vector<FaultKind> eligible;
    int running = 0;
    for (auto& s : servers_) running += s.state == ServerState::kRunning ? 1 : 0;
    for (FaultKind k : kinds_) {
      if (running == 2 || (running == 1 && !needs_both(k))) eligible.push_back(k);
    }
    if (eligible.empty()) continue;  // the restart policy brings someone back next round
    inject(eligible[static_cast<std::size_t>(uniform(0, static_cast<int>(eligible.size()) - 1))]);
    if (faults_ % 10 == 0) {
      std::fprintf(stderr,
                   "fault-run: %d/%d faults, %.1f s, acked %llu, errors %llu, restarts %d, "
                   "crashes %zu, last: %s %s; now A %s, B %s\n",
                   faults_, o_.faults, elapsed_s(), static_cast<unsigned long long>(acked_now()),
                   static_cast<unsigned long long>(errors_now()), restarts_, crashes_.size(),
                   events_.back().kind.c_str(), events_.back().detail.c_str(),
                   std::string(state_name(servers_[0].state)).c_str(),
                   std::string(state_name(servers_[1].state)).c_str());
    }
  }
  bool timed_out = faults_ < o_.faults;

  // Faults over: bring back whoever is dead, let the sessions find an active, drain, read.
  for (auto& s : servers_) thaw(s);
  check_crashes();
  restart_dead(true);
  bool active_found =
      wait_for_active(std::min<std::int64_t>(end_ns_, steady_now_ns() + 30'000'000'000LL));
  sleep_ms(500);  // a little load on the settled pair
  stop_load.store(true);
  for (auto& t : threads) t.join();
  std::string final_why;
  // Each attempt waits up to failover_call_deadline_ms; with no active found, one is enough.
  std::optional<std::uint64_t> final_total =
      read_final_total(std::max<std::int64_t>(end_ns_, steady_now_ns() + 10'000'000'000LL),
                       active_found ? 10 : 1, &final_why);
  check_crashes();
  // As they announced it, before they go: "A passive, B passive" is a pair nobody serves.
  std::string end_roles = std::string("A ") + role_of(servers_[0]) + ", B " + role_of(servers_[1]);
  for (auto& s : servers_) kill(s);
  stop_hog();

  // The verdicts.
  std::vector<Ack> acks;
  std::map<std::string, std::uint64_t> errors;
  std::uint64_t error_count = 0, unanswered = 0, double_callbacks = 0;
  std::vector<std::string> open_errors;
  nlohmann::json failovers = nlohmann::json::array();
  for (auto& l : loads) {
    acks.insert(acks.end(), l->acks.begin(), l->acks.end());
    for (const auto& [m, n] : l->errors) errors[m] += n;
    error_count += l->error_count;
    unanswered += l->unanswered;
    double_callbacks += l->double_callbacks;
    if (!l->open_error.empty()) open_errors.push_back(l->open_error);
    failovers.push_back(l->failovers);
  }
  const std::uint64_t acked = acks.size();
  const std::uint64_t unknown = error_count + unanswered;
  // What the sessions saw between one event and the next: how many answers, which totals.
  struct Window {
    std::uint64_t acks = 0, min_total = UINT64_MAX, max_total = 0;
  };
  std::vector<Window> windows(events_.size());
  for (const auto& a : acks) {
    auto it = std::upper_bound(events_.begin(), events_.end(), a.at_ns,
                               [](std::int64_t t, const Event& e) { return t < e.at_ns; });
    if (it == events_.begin()) continue;
    Window& w = windows[static_cast<std::size_t>(it - events_.begin()) - 1];
    ++w.acks;
    w.min_total = std::min(w.min_total, a.total);
    w.max_total = std::max(w.max_total, a.total);
  }
  // Rollbacks. One session's requests are executed in the order it sent them (one connection),
  // so the totals it gets only grow, but for the D in flight answered out of order. A total
  // lower than the session's highest by more than D means the counter went back: the updates
  // acknowledged in between are gone. (Across sessions there is no such order: a slow session's
  // answers lag the other's.) Every event since the session's answer before it, and the one then
  // in effect, is a suspect;
  // sessions that saw the same rollback report the same suspects, counted once.
  struct Rollback {
    std::int64_t at_ns, since_ns;
    std::uint64_t from, to;
    std::vector<std::size_t> events;
    std::string faults;  // the fault kinds among the suspects, in order
  };
  std::map<std::vector<std::size_t>, Rollback> by_suspects;
  for (auto& l : loads) {
    std::uint64_t high = 0;
    std::int64_t last_ns = start_ns_;
    for (const auto& a : l->acks) {
      if (a.total + static_cast<std::uint64_t>(o_.depth) < high) {
        Rollback r{a.at_ns, last_ns, high, a.total, {}, {}};
        // The last event that began before that answer too: a server may answer on for a while
        // after a fault (an active serving alone, one not yet told it was replaced).
        std::size_t from = 0;
        for (std::size_t i = 0; i < events_.size() && events_[i].at_ns <= last_ns; ++i) from = i;
        for (std::size_t i = from; i < events_.size(); ++i) {
          if (events_[i].at_ns > a.at_ns) break;
          r.events.push_back(i);
          if (events_[i].kind == "restart") continue;
          r.faults += (r.faults.empty() ? "" : " + ") + events_[i].kind;
        }
        if (r.faults.empty()) r.faults = "(no fault)";
        auto [it, fresh] = by_suspects.try_emplace(r.events, r);
        if (!fresh && it->second.from - it->second.to < r.from - r.to) it->second = r;
        high = a.total;
      }
      high = std::max(high, a.total);
      last_ns = a.at_ns;
    }
  }
  std::vector<Rollback> rollbacks;
  std::map<std::string, std::uint64_t> rolled_back_after;  // suspects' kinds -> totals gone
  for (auto& [events, r] : by_suspects) {
    rolled_back_after[r.faults] += r.from - r.to;
    rollbacks.push_back(r);
  }
  std::sort(rollbacks.begin(), rollbacks.end(),
            [](const Rollback& x, const Rollback& y) { return x.at_ns < y.at_ns; });
  // A repeated total: the counter went back (an update lost) or two actives answered.
  std::sort(acks.begin(), acks.end(), [](const Ack& x, const Ack& y) {
    return x.total != y.total ? x.total < y.total : x.at_ns < y.at_ns;
  });
  std::uint64_t repeated = 0, max_total = 0;
  for (std::size_t i = 0; i < acks.size(); ++i) {
    max_total = std::max(max_total, acks[i].total);
    if (i > 0 && acks[i].total == acks[i - 1].total) ++repeated;
  }
  std::uint64_t lost = 0, above_final = 0, shortfall = 0, doubled = 0;
  if (final_total) {
    for (const auto& a : acks) above_final += a.total > *final_total ? 1 : 0;
    shortfall = acked > *final_total ? acked - *final_total : 0;
    lost = std::max({repeated, above_final, shortfall});
    doubled = *final_total > acked + unknown ? *final_total - acked - unknown : 0;
  }
  bool pass = final_total && lost == 0 && doubled == 0 && crashes_.empty() &&
              double_callbacks == 0 && open_errors.empty() && !timed_out;

  // The report.
  std::printf("faults: %d in %.1f s (", faults_, elapsed_s());
  bool first = true;
  for (const auto& [k, n] : faults_by_kind_) {
    std::printf("%s%s %d", first ? "" : ", ", k.c_str(), n);
    first = false;
  }
  std::printf("); %d hit the active; %d restarts%s\n", hit_active_, restarts_,
              timed_out ? "; STOPPED EARLY (--max-seconds or interrupted)" : "");
  std::printf(
      "acked %llu, errors %llu, unanswered %llu, final total %s (max acked total %llu)\n",
      static_cast<unsigned long long>(acked), static_cast<unsigned long long>(error_count),
      static_cast<unsigned long long>(unanswered),
      final_total ? std::to_string(*final_total).c_str() : ("unknown: " + final_why).c_str(),
      static_cast<unsigned long long>(max_total));
  for (const auto& [m, n] : errors)
    std::printf("  error x%llu: %s\n", static_cast<unsigned long long>(n), m.c_str());
  for (const auto& e : open_errors) std::printf("  session did not open: %s\n", e.c_str());
  if (!active_found) {
    std::printf("  no active server answered the lookup at the end (%s)\n", end_roles.c_str());
  }
  if (double_callbacks > 0)
    std::printf("  %llu requests answered twice by the session\n",
                static_cast<unsigned long long>(double_callbacks));
  std::printf(
      "lost: %llu repeated totals, %llu acked totals above the final, final short of acked "
      "by %llu\n",
      static_cast<unsigned long long>(repeated), static_cast<unsigned long long>(above_final),
      static_cast<unsigned long long>(shortfall));
  for (const auto& [k, n] : rolled_back_after) {
    std::printf("  counter went back by %llu after: %s\n", static_cast<unsigned long long>(n),
                k.c_str());
  }
  for (std::size_t i = 0; i < std::min<std::size_t>(rollbacks.size(), 10); ++i) {
    const Rollback& r = rollbacks[i];
    std::printf("  rollback at %.3f s: total %llu -> %llu; since the answer before (%.3f s):",
                static_cast<double>(r.at_ns - start_ns_) / 1e9,
                static_cast<unsigned long long>(r.from), static_cast<unsigned long long>(r.to),
                static_cast<double>(r.since_ns - start_ns_) / 1e9);
    for (std::size_t e : r.events) {
      std::printf(" [%.3f %s: %s]", static_cast<double>(events_[e].at_ns - start_ns_) / 1e9,
                  events_[e].kind.c_str(), events_[e].detail.c_str());
    }
    std::printf("\n");
  }
  for (const auto& c : crashes_) {
    std::printf("crash: server %c (start %d) %s\n  last stdout:\n%s\n  last stderr:\n%s\n", c.label,
                c.start, c.how.c_str(), c.stdout_tail.c_str(), c.stderr_tail.c_str());
  }
  std::string final_text = final_total ? std::to_string(*final_total) : "unknown";
  std::string lost_text = final_total ? std::to_string(lost) : "unknown";
  std::string doubled_text = final_total ? std::to_string(doubled) : "unknown";
  std::printf(
      "fault-run seed=%llu faults=%d acked=%llu errors=%llu final=%s lost=%s doubled=%s "
      "crashes=%zu verdict=%s\n",
      static_cast<unsigned long long>(seed_), faults_, static_cast<unsigned long long>(acked),
      static_cast<unsigned long long>(unknown), final_text.c_str(), lost_text.c_str(),
      doubled_text.c_str(), crashes_.size(), pass ? "PASS" : "FAIL");
  std::fflush(stdout);

  if (!o_.json_path.empty()) {
    nlohmann::json j{{"seed", seed_},
                     {"faults", faults_},
                     {"faults_requested", o_.faults},
                     {"faults_by_kind", faults_by_kind_},
                     {"faults_hit_active", hit_active_},
                     {"restarts", restarts_},
                     {"sessions", o_.sessions},
                     {"depth", o_.depth},
                     {"hog_cpus", o_.hog_cpus},
                     {"server_args", o_.server_args},
                     {"seconds", elapsed_s()},
                     {"stopped_early", timed_out},
                     {"acked", acked},
                     {"errors", error_count},
                     {"unanswered", unanswered},
                     {"unknown_outcome", unknown},
                     {"errors_by_message", errors},
                     {"session_failovers", failovers},
                     {"double_callbacks", double_callbacks},
                     {"final_total", final_total ? nlohmann::json(*final_total) : nlohmann::json()},
                     {"final_read_error", final_total ? "" : final_why},
                     {"max_acked_total", max_total},
                     {"repeated_totals", repeated},
                     {"counter_went_back_after", rolled_back_after},
                     {"acked_above_final", above_final},
                     {"final_short_of_acked", shortfall},
                     {"lost", final_total ? nlohmann::json(lost) : nlohmann::json()},
                     {"doubled", final_total ? nlohmann::json(doubled) : nlohmann::json()},
                     {"verdict", pass ? "PASS" : "FAIL"},
                     {"active_at_end", active_found},
                     {"roles_at_end", end_roles},
                     {"log_dir", log_dir_}};
    j["crashes"] = nlohmann::json::array();
    for (const auto& c : crashes_) {
      j["crashes"].push_back({{"server", std::string(1, c.label)},
                              {"start", c.start},
                              {"how", c.how},
                              {"stdout_tail", c.stdout_tail},
                              {"stderr_tail", c.stderr_tail}});
    }
    j["rollbacks"] = nlohmann::json::array();
    for (const auto& r : rollbacks) {
      j["rollbacks"].push_back({{"at_s", static_cast<double>(r.at_ns - start_ns_) / 1e9},
                                {"since_s", static_cast<double>(r.since_ns - start_ns_) / 1e9},
                                {"from_total", r.from},
                                {"to_total", r.to},
                                {"faults", r.faults},
                                {"events", r.events}});
    }
    j["events"] = nlohmann::json::array();
    for (std::size_t i = 0; i < events_.size(); ++i) {
      const Event& e = events_[i];
      j["events"].push_back(
          {{"at_s", static_cast<double>(e.at_ns - start_ns_) / 1e9},
           {"kind", e.kind},
           {"detail", e.detail},
           {"hit_active", e.hit_active},
           {"acks_until_next", windows[i].acks},
           {"min_total_until_next", windows[i].acks > 0 ? windows[i].min_total : 0},
           {"max_total_until_next", windows[i].max_total}});
    }
    std::ofstream(o_.json_path) << j.dump(2) << "\n";
  }
  return pass ? 0 : 1;
}

}  // namespace

const std::vector<std::string>& fault_kind_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    v.reserve(kAllKinds.size());
    for (FaultKind k : kAllKinds) v.emplace_back(kind_name(k));
    return v;
  }();
  return names;
}

int run_fault_run(const FaultRunOptions& options, const std::atomic<bool>& interrupted) {
  if (options.faults < 0 || options.sessions < 1 || options.depth < 1 ||
      options.min_load_ms > options.max_load_ms || options.min_freeze_ms > options.max_freeze_ms ||
      options.max_seconds < 10) {
    std::fprintf(stderr, "fault-run: bad options (sessions and depth >= 1, max-seconds >= 10)\n");
    return 2;
  }
  std::uint64_t seed = options.seed ? *options.seed
                                    : (static_cast<std::uint64_t>(std::random_device{}()) << 32) |
                                          std::random_device{}();
  FaultRun run(options, seed, interrupted);
  return run.run();
}

}  // namespace viaduct::bench
