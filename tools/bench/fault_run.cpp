#include "tools/bench/fault_run.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
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
#include <set>
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
// A `viaduct serve` prints "serving" within a second on an idle host, but took more than 5 s
// beside `--hog 4` (mlockall and the start of its threads, starved): a slow start is not a crash.
constexpr int kStartTimeoutMs = 20000;
constexpr int kSyncTimeoutMs = 20000;  // a fresh passive's "in-sync" line, after "serving"
// After a fault, only passives left, one of which refused to take over (out of sync): a double
// fault when no active appears within this.
constexpr int kRefuseWaitMs = 3000;
constexpr int kPortsFreeTimeoutMs = 10000;  // a fresh pair's ports, after the last pair's end
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
  std::int64_t at_ns;    // when the answer was read
  std::int64_t sent_ns;  // when the request was first handed to the session
  std::uint64_t total;
};

struct Load;
struct Slot {
  Load* load = nullptr;
  bool busy = false;
  std::int64_t sent_ns = 0;
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
  l.acks.push_back({steady_now_ns(), slot->sent_ns, total});
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
      slot.sent_ns = steady_now_ns();
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

// `at-ns N` of every "took-over" line in a server's stdout, with the line.
std::vector<std::pair<std::int64_t, std::string>> takeovers(const std::string& out) {
  std::vector<std::pair<std::int64_t, std::string>> found;
  std::size_t pos = 0;
  for (;;) {
    std::size_t end = out.find('\n', pos);
    if (end == std::string::npos) break;
    std::string_view line(out.data() + pos, end - pos);
    if (line.starts_with("took-over ")) {
      std::int64_t at = 0;
      if (auto a = line.find(" at-ns "); a != std::string_view::npos)
        at = std::strtoll(std::string(line.substr(a + 7)).c_str(), nullptr, 10);
      found.emplace_back(at, std::string(line));
    }
    pos = end + 1;
  }
  return found;
}

// Every port of the pair can be bound again: the transport's TCP listeners and the partner
// links' UDP sockets (same numbers), and the lookup responders' UDP sockets. A fresh pair on the
// same ports must not fail to start because the last one's sockets are still going away.
bool port_free(int port, int type) {
  int fd = socket(AF_INET, type, 0);
  if (fd < 0) return false;
  int one = 1;
  if (type == SOCK_STREAM) (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

bool ports_free(int base) {
  for (int i = 0; i < 4; ++i) {
    if (!port_free(base + i, SOCK_DGRAM)) return false;
    if (i < 2 && !port_free(base + i, SOCK_STREAM)) return false;
  }
  return true;
}

struct Server {
  char label = 'A';
  std::string uri, partner_uri, lookup;
  std::unique_ptr<ChildProcess> proc;
  ServerState state = ServerState::kDead;
  int starts = 0;
  std::size_t mark = 0;   // its stdout's length when the last fault began: what it said since
  bool promoted = false;  // we sent it SIGUSR1: its unclean takeover was asked for
};

struct Crash {
  char label;
  int start;  // which start of that server (1: the first)
  std::string how, stdout_tail, stderr_tail;
};

struct Event {
  std::int64_t at_ns;   // when it began
  std::int64_t end_ns;  // and ended (a freeze, a double fault and a restart take a while)
  std::string kind;     // a fault kind, "restart", "era" or "promote"
  std::string detail;
  bool hit_active = false;
  int era = 0;
  std::int64_t last_kill_ns = 0;  // its last SIGKILL: when a double fault lost the last server
};

// The sessions of one era, one thread each.
class LoadSet {
 public:
  LoadSet(const std::vector<failover::UdpEndpoint>& lookup, int sessions, int depth) {
    for (int i = 0; i < sessions; ++i) {
      auto l = std::make_unique<Load>();
      l->lookup = lookup;
      l->slots.resize(static_cast<std::size_t>(depth));
      for (auto& slot : l->slots) slot.load = l.get();
      l->acks.reserve(1 << 18);
      loads_.push_back(std::move(l));
    }
    threads_.reserve(loads_.size());
    for (auto& l : loads_) threads_.emplace_back([this, p = l.get()] { run_load(*p, stop_); });
  }
  ~LoadSet() { stop(); }
  LoadSet(const LoadSet&) = delete;
  LoadSet& operator=(const LoadSet&) = delete;
  // Stops sending, waits for every call in flight (answer or deadline error), joins.
  void stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  [[nodiscard]] std::uint64_t acked() const {
    std::uint64_t n = 0;
    for (const auto& l : loads_) n += l->acked_live.load(std::memory_order_relaxed);
    return n;
  }
  [[nodiscard]] std::uint64_t errors() const {
    std::uint64_t n = 0;
    for (const auto& l : loads_) n += l->errors_live.load(std::memory_order_relaxed);
    return n;
  }
  std::vector<std::unique_ptr<Load>>& loads() { return loads_; }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Load>> loads_;
  std::vector<std::thread> threads_;
};

// How an era ended.
enum class EraEnd {
  kRunEnd,      // the faults were over: the final total was read
  kRefused,     // a double fault left no in-sync server, and the survivors refused to serve
  kPromoted,    // the same, and the operator promoted the out-of-sync survivor (SIGUSR1)
  kStuck,       // no active, and no server said it refused
  kNotStarted,  // the fresh pair did not start or did not get in sync
};

std::string_view era_end_name(EraEnd e) {
  switch (e) {
    case EraEnd::kRunEnd:
      return "run-end";
    case EraEnd::kRefused:
      return "refused";
    case EraEnd::kPromoted:
      return "promoted";
    case EraEnd::kStuck:
      return "stuck";
    case EraEnd::kNotStarted:
      return "not-started";
  }
  return "?";
}

struct Rollback {
  std::int64_t at_ns, since_ns;
  std::uint64_t from, to;
  std::vector<std::size_t> events;
  std::string faults;  // the fault kinds among the suspects, in order
};

// One era: a pair (fresh, or carried on after a promotion), fresh sessions, its own accounting.
// State lives in the servers' memory, so what a double fault takes is the era's whole counter:
// nothing of it can be checked after, and each era is judged on its own.
struct Era {
  int index = 0;  // 1, 2, ...
  std::int64_t start_ns = 0, end_ns = 0;
  std::uint64_t base = 0;  // the counter when the era began: 0, or what a promotion kept
  std::size_t first_event = 0, end_event = 0;  // its events: [first_event, end_event)
  int faults = 0;
  EraEnd end = EraEnd::kRunEnd;
  std::string end_detail;
  std::int64_t loss_ns = 0;  // refused/promoted: when the last in-sync server was lost
  // The sessions' outcomes.
  std::vector<std::vector<Ack>> session_acks;
  std::map<std::string, std::uint64_t> errors;
  std::uint64_t error_count = 0, unanswered = 0, double_callbacks = 0;
  std::vector<std::string> open_errors;
  std::vector<std::uint64_t> failovers;
  // Seen on the servers.
  std::vector<std::string> actives_after_loss;  // took-over lines after the loss (refused eras)
  std::vector<std::string> unclean;             // unclean takeovers nobody asked for
  bool active_found = true;                     // at the end of the run
  std::string end_roles;
  // The judgement.
  std::optional<std::uint64_t> final_total;
  std::string final_why;
  std::optional<std::uint64_t> promoted_total;  // kPromoted: what the promoted server kept
  std::int64_t first_ack_ns = 0;                // how long the fresh sessions took to get going
  std::uint64_t acked = 0, max_total = 0, max_before_loss = 0, repeated = 0, above_final = 0,
                shortfall = 0, below_base = 0, served_after_loss = 0, rolled_back = 0, lost = 0,
                doubled = 0, accepted_loss = 0;
  std::vector<Rollback> rollbacks;
  std::map<std::string, std::uint64_t> rolled_back_after;
  bool ok = false;

  [[nodiscard]] std::uint64_t unknown() const { return error_count + unanswered; }
};

class FaultRun {
 public:
  FaultRun(const FaultRunOptions& o, std::uint64_t seed, const std::atomic<bool>& interrupted)
      : o_(o), seed_(seed), rng_(seed), interrupted_(interrupted) {}
  int run();

 private:
  enum class Watch { kServing, kRefused, kStuck };

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  double at_s(std::int64_t ns) const { return static_cast<double>(ns - start_ns_) / 1e9; }
  double elapsed_s() const { return at_s(steady_now_ns()); }
  bool out_of_time() const { return steady_now_ns() >= fault_deadline_ns_ || interrupted_.load(); }
  void sleep_ms(int ms) const;
  std::string stderr_path(const Server& s) const {
    return log_dir_ + "/" + s.label + "." + std::to_string(s.starts) + ".stderr";
  }
  std::vector<failover::UdpEndpoint> lookup_endpoints() const;
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
  Watch watch_after_fault(std::string* seen);
  bool begin_era();
  void end_era(EraEnd how, const std::string& detail, std::int64_t loss_ns);
  bool promote_survivor(std::int64_t loss_ns, const std::string& detail);
  void collect(Era& era);
  void finish_run_era(bool timed_out);
  bool wait_for_active(std::int64_t until_ns);
  bool wait_ports_free();
  std::optional<std::uint64_t> read_total(std::int64_t until_ns, int attempts, std::string* why);
  void judge(Era& era);
  void print_era(const Era& era) const;
  nlohmann::json era_json(const Era& era) const;
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
  std::vector<std::string> slow_starts_;
  std::vector<Event> events_;
  std::vector<Era> eras_;
  std::unique_ptr<LoadSet> load_;  // the current era's sessions
  std::map<std::string, int> faults_by_kind_;
  int faults_ = 0, hit_active_ = 0, restarts_ = 0;
  bool promoting_ = false;  // we sent SIGUSR1: an unclean takeover is asked for
  std::unique_ptr<ChildProcess> hog_;
  std::int64_t start_ns_ = 0, fault_deadline_ns_ = 0, end_ns_ = 0;
};

void FaultRun::sleep_ms(int ms) const {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

std::vector<failover::UdpEndpoint> FaultRun::lookup_endpoints() const {
  std::vector<failover::UdpEndpoint> lookup;
  for (const auto& s : servers_) lookup.push_back(failover::UdpEndpoint::parse(s.lookup).value());
  return lookup;
}

bool FaultRun::start(Server& s, const char* role) {
  ++s.starts;
  s.mark = 0;
  s.promoted = false;
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
    // Alive but silent: a starved host (stress-ng beside it), not a crash. It is not waited for
    // longer: the run goes on as if it had not come back.
    slow_starts_.push_back(std::string(1, s.label) + " start " + std::to_string(s.starts) +
                           ": no 'serving' line within " + std::to_string(kStartTimeoutMs / 1000) +
                           " s (killed, not counted as a crash)");
    std::fprintf(stderr, "fault-run: %s\n", slow_starts_.back().c_str());
    s.proc->kill_hard();
  }
  s.state = ServerState::kDead;
  save_stdout(s);
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

// Once per server process, when it is gone: its stdout to the log directory, and any unclean
// takeover in it that we did not ask for (only SIGUSR1 or partner_unclean_takeover=1 may).
void FaultRun::save_stdout(Server& s) {
  const std::string& out = s.proc->output();
  std::ofstream(log_dir_ + "/" + s.label + "." + std::to_string(s.starts) + ".stdout") << out;
  if (s.promoted || eras_.empty()) return;
  for (const auto& [at, line] : takeovers(out)) {
    if (line.find(" unclean") == std::string::npos || at < eras_.back().start_ns) continue;
    eras_.back().unclean.push_back(std::string(1, s.label) + ": " + line);
  }
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

// One dead: it restarts as passive, with --restart-percent chance unless `all` (so a fault
// sometimes finds a server alone). Both dead happens only at an era's end (a double fault), or
// after a crash; then both restart, one (at random) configured active.
void FaultRun::restart_dead(bool all) {
  bool a_dead = servers_[0].state == ServerState::kDead;
  bool b_dead = servers_[1].state == ServerState::kDead;
  auto restart = [&](Server& s, const char* role) {
    events_.push_back({steady_now_ns(), 0, "restart", std::string(1, s.label) + " as " + role,
                       false, static_cast<int>(eras_.size())});
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
  Event e{
      steady_now_ns(), 0, std::string(kind_name(kind)), {}, false, static_cast<int>(eras_.size())};
  std::vector<Server*> live;
  for (auto& s : servers_) {
    if (s.state == ServerState::kRunning) {
      live.push_back(&s);
      s.mark = s.proc->output().size();
    }
  }
  auto note = [&](Server& s, const char* what) {
    std::string role = role_of(s);
    if (role == "active") e.hit_active = true;
    if (!e.detail.empty()) e.detail += ", ";
    e.detail += std::string(what) + " " + s.label + " (" + role + ")";
  };
  // The loss counts from when the process is reaped: it can answer nothing after that.
  auto kill_now = [&](Server& s) {
    kill(s);
    e.last_kill_ns = steady_now_ns();
  };
  switch (kind) {
    case FaultKind::kKill: {
      Server& s = *live[static_cast<std::size_t>(uniform(0, static_cast<int>(live.size()) - 1))];
      note(s, "kill");
      kill_now(s);
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
      kill_now(act);
      sleep_ms(after);
      thaw(pas);
      break;
    }
    case FaultKind::kKillBoth: {
      std::size_t first = static_cast<std::size_t>(uniform(0, 1));
      note(servers_[first], "kill");
      note(servers_[1 - first], "kill");
      kill_now(servers_[first]);
      kill_now(servers_[1 - first]);
      break;
    }
    case FaultKind::kKillThenKill: {
      std::size_t first = static_cast<std::size_t>(uniform(0, 1));
      int gap = uniform(o_.min_freeze_ms, o_.max_freeze_ms);
      note(servers_[first], "kill");
      kill_now(servers_[first]);
      sleep_ms(gap);
      note(servers_[1 - first], ("kill " + std::to_string(gap) + " ms later").c_str());
      kill_now(servers_[1 - first]);
      break;
    }
  }
  e.end_ns = steady_now_ns();
  ++faults_;
  ++eras_.back().faults;
  ++faults_by_kind_[e.kind];
  if (e.hit_active) ++hit_active_;
  events_.push_back(std::move(e));
}

// After a fault: is someone serving? An announced active is. Both dead, or only passives of
// which one refused to take over (out of sync) with no active within kRefuseWaitMs, is a double
// fault: the service correctly refuses. Only passives and no refusal either: stuck (a passive
// must take over or say why not).
FaultRun::Watch FaultRun::watch_after_fault(std::string* seen) {
  std::int64_t t0 = steady_now_ns();
  std::int64_t refuse_at = t0 + kRefuseWaitMs * 1'000'000LL;
  std::int64_t stuck_at = t0 + 2 * kRefuseWaitMs * 1'000'000LL;
  for (;;) {
    check_crashes();
    bool any_running = false;
    std::string refused;
    for (auto& s : servers_) {
      if (s.state == ServerState::kDead) continue;
      any_running = true;
      const std::string& out = s.proc->output();
      if (announced_role(out) == "active") return Watch::kServing;
      if (auto r = out.find("takeover-refused ", s.mark); r != std::string::npos)
        refused = std::string(1, s.label) + ": " + out.substr(r, out.find('\n', r) - r);
    }
    if (!any_running) {
      *seen = "both servers dead";
      return Watch::kRefused;
    }
    std::int64_t now = steady_now_ns();
    if (!refused.empty() && now >= refuse_at) {
      *seen = "no active within " + std::to_string(kRefuseWaitMs / 1000) + " s; " + refused;
      return Watch::kRefused;
    }
    if (now >= stuck_at) {
      *seen = "no active and no takeover-refused within " +
              std::to_string(2 * kRefuseWaitMs / 1000) + " s (A " + role_of(servers_[0]) + ", B " +
              role_of(servers_[1]) + ")";
      return Watch::kStuck;
    }
    sleep_ms(10);
  }
}

// A fresh pair (A configured active, B passive) on the run's ports, B in sync before any load,
// and fresh sessions: the last era's sessions saw newer epochs, and a fresh pair starts at 1.
bool FaultRun::begin_era() {
  Era era;
  era.index = static_cast<int>(eras_.size()) + 1;
  era.start_ns = steady_now_ns();
  era.first_event = events_.size();
  eras_.push_back(std::move(era));
  Era& e = eras_.back();
  events_.push_back({e.start_ns, 0, "era",
                     "era " + std::to_string(e.index) + ": fresh pair, A active, B passive", false,
                     e.index});
  if (!start(servers_[0], "active") || !start(servers_[1], "passive")) {
    for (auto& s : servers_) kill(s);
    e.end = EraEnd::kNotStarted;
    e.end_detail = "the pair did not start (ports " + std::to_string(o_.base_port) + ".." +
                   std::to_string(o_.base_port + 3) + " busy, or a crash or slow start above)";
    e.end_ns = steady_now_ns();
    e.end_event = events_.size();
    return false;
  }
  // Replication up (unless the server args turned it off) and the passive holding the active's
  // snapshot: a fault from now on may hit the active, and only an in-sync passive takes over.
  bool replicating = servers_[0].proc->wait_for("replicating to partner", kSyncTimeoutMs);
  bool in_sync = servers_[1].proc->wait_for("in-sync ", replicating ? kSyncTimeoutMs : 100);
  if (!in_sync) {
    std::fprintf(stderr, "fault-run: era %d: B printed no in-sync line (%s); going on\n", e.index,
                 replicating ? "replicating" : "no replication");
  }
  events_.back().end_ns = steady_now_ns();
  sleep_ms(100);
  load_ = std::make_unique<LoadSet>(lookup_endpoints(), o_.sessions, o_.depth);
  return true;
}

void FaultRun::collect(Era& era) {
  if (!load_) return;
  load_->stop();
  for (auto& l : load_->loads()) {
    era.session_acks.push_back(std::move(l->acks));
    for (const auto& [m, n] : l->errors) era.errors[m] += n;
    era.error_count += l->error_count;
    era.unanswered += l->unanswered;
    era.double_callbacks += l->double_callbacks;
    if (!l->open_error.empty()) era.open_errors.push_back(l->open_error);
    era.failovers.push_back(l->failovers);
  }
  load_.reset();
}

// A double fault ended the era. The survivors (if any) keep running while the sessions drain:
// their calls get the deadline's clear error, and any server that served meanwhile is caught.
void FaultRun::end_era(EraEnd how, const std::string& detail, std::int64_t loss_ns) {
  Era& e = eras_.back();
  e.end = how;
  e.end_detail = detail;
  e.loss_ns = loss_ns;
  if (load_) load_->stop();
  check_crashes();
  for (auto& s : servers_) {
    if (s.state == ServerState::kDead) continue;
    for (const auto& [at, line] : takeovers(s.proc->output())) {
      if (at > loss_ns) e.actives_after_loss.push_back(std::string(1, s.label) + ": " + line);
    }
  }
  for (auto& s : servers_) thaw(s);
  for (auto& s : servers_) kill(s);
  collect(e);
  e.end_ns = steady_now_ns();
  e.end_event = events_.size();
}

// --on-double-fault promote: the operator promotes the out-of-sync survivor. The load stops
// first (its sessions hold the old epoch and calls that may have executed), the promoted
// server's total T is read through a fresh session, and the loss the promotion accepted is the
// era's highest acknowledged total minus T. The next era continues on this server from T.
bool FaultRun::promote_survivor(std::int64_t loss_ns, const std::string& detail) {
  Server* survivor = nullptr;
  for (auto& s : servers_) {
    if (s.state == ServerState::kRunning) survivor = &s;
  }
  if (survivor == nullptr) return false;
  Era& e = eras_.back();
  e.end = EraEnd::kPromoted;
  e.end_detail = detail;
  e.loss_ns = loss_ns;
  if (load_) load_->stop();
  check_crashes();
  for (auto& s : servers_) {
    if (s.state == ServerState::kDead) continue;
    for (const auto& [at, line] : takeovers(s.proc->output())) {
      if (at > loss_ns) e.actives_after_loss.push_back(std::string(1, s.label) + ": " + line);
    }
  }
  collect(e);
  e.end_ns = steady_now_ns();
  e.end_event = events_.size();
  if (survivor->state != ServerState::kRunning) return false;
  promoting_ = true;
  Event p{steady_now_ns(), 0,      "promote", std::string("SIGUSR1 to ") + survivor->label,
          false,           e.index};
  std::size_t mark = survivor->proc->output().size();
  survivor->promoted = true;
  survivor->proc->signal(SIGUSR1);
  bool took_over = false;
  for (int i = 0; i < kRefuseWaitMs / 10 && !took_over; ++i) {
    took_over = survivor->proc->output().find("took-over ", mark) != std::string::npos;
    if (!took_over) sleep_ms(10);
  }
  p.end_ns = steady_now_ns();
  events_.push_back(p);
  if (!took_over) {
    promoting_ = false;
    e.end_detail += "; the promoted server did not take over";
    return false;
  }
  std::string why;
  e.promoted_total = read_total(steady_now_ns() + 10'000'000'000LL, 2, &why);
  promoting_ = false;
  if (!e.promoted_total) {
    e.end_detail += "; the promoted server's total could not be read: " + why;
    return false;
  }
  // The next era: this server, from T, with its partner back as passive and in sync first.
  Era next;
  next.index = e.index + 1;
  next.start_ns = steady_now_ns();
  next.base = *e.promoted_total;
  next.first_event = events_.size();
  eras_.push_back(std::move(next));
  Era& n = eras_.back();
  events_.push_back({n.start_ns, 0, "era",
                     "era " + std::to_string(n.index) + ": " + survivor->label +
                         " promoted, from total " + std::to_string(n.base),
                     false, n.index});
  std::array<bool, 2> was_dead{servers_[0].state == ServerState::kDead,
                               servers_[1].state == ServerState::kDead};
  restart_dead(true);
  for (std::size_t i = 0; i < 2; ++i) {
    if (was_dead[i] && servers_[i].state == ServerState::kRunning)
      (void)servers_[i].proc->wait_for("in-sync ", kSyncTimeoutMs);
  }
  events_[n.first_event].end_ns = steady_now_ns();
  load_ = std::make_unique<LoadSet>(lookup_endpoints(), o_.sessions, o_.depth);
  return true;
}

// The faults are over and the era still serves: bring back whoever is dead, let the sessions
// find an active, drain, read the final total.
void FaultRun::finish_run_era(bool timed_out) {
  Era& e = eras_.back();
  e.end = EraEnd::kRunEnd;
  e.end_detail = timed_out ? "stopped early" : "faults over";
  for (auto& s : servers_) thaw(s);
  check_crashes();
  restart_dead(true);
  e.active_found =
      wait_for_active(std::min<std::int64_t>(end_ns_, steady_now_ns() + 30'000'000'000LL));
  sleep_ms(500);  // a little load on the settled pair
  if (load_) load_->stop();
  // Each attempt waits up to failover_call_deadline_ms; with no active found, one is enough.
  e.final_total = read_total(std::max<std::int64_t>(end_ns_, steady_now_ns() + 10'000'000'000LL),
                             e.active_found ? 10 : 1, &e.final_why);
  check_crashes();
  // As they announced it, before they go: "A passive, B passive" is a pair nobody serves.
  e.end_roles = std::string("A ") + role_of(servers_[0]) + ", B " + role_of(servers_[1]);
  for (auto& s : servers_) kill(s);
  collect(e);
  e.end_ns = steady_now_ns();
  e.end_event = events_.size();
}

bool FaultRun::wait_for_active(std::int64_t until_ns) {
  auto lookup = lookup_endpoints();
  while (steady_now_ns() < until_ns) {
    if (failover::lookup(kName, lookup, 200)) return true;
    check_crashes();
    restart_dead(true);
    sleep_ms(50);
  }
  return false;
}

bool FaultRun::wait_ports_free() {
  for (int waited = 0; waited < kPortsFreeTimeoutMs; waited += 50) {
    if (ports_free(o_.base_port)) return true;
    sleep_ms(50);
  }
  return false;
}

// One "add 0" through a fresh session (it has seen no epoch, so no server is stale to it).
std::optional<std::uint64_t> FaultRun::read_total(std::int64_t until_ns, int attempts,
                                                  std::string* why) {
  auto lookup = lookup_endpoints();
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
    if (!promoting_) restart_dead(true);
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

// The verdict of one era.
//   - Every acknowledged total distinct, and above the era's base (a repeat or a total at or
//     below what the era started from means a lost update or two actives).
//   - The counter never went back: a request sent after another's answer was read has a higher
//     total.
//   - With a final total (the run's last era): no acknowledged total above it, base + acked <=
//     final (nothing lost), final <= base + acked + unknown outcomes (nothing doubled).
//   - Ended by a double fault: no server served after the last in-sync one was lost (no answer
//     to a request sent after that moment, none repeating a total or going back), and none took
//     over. Its acknowledged work is lost by the double fault, openly (the clients got errors),
//     not silently.
//   - No unclean takeover that the run did not ask for.
void FaultRun::judge(Era& e) {
  std::vector<Ack> all;
  for (const auto& s : e.session_acks) all.insert(all.end(), s.begin(), s.end());
  e.acked = all.size();
  // Rollbacks, by causality. An answer read before another request was sent was executed before
  // it, so the later request's total must be higher: the counter only grows. One below means the
  // counter went back (the updates acknowledged in between are gone). Requests in flight together
  // carry no order (answers held for replication are released out of order, and a failover
  // re-sends in slot order), so they are never compared. Every event since the highest earlier
  // answer, and the one then in effect, is a suspect; answers that saw the same rollback report
  // the same suspects, counted once.
  std::vector<const Ack*> by_sent, by_answer;
  for (const auto& s : e.session_acks) {
    for (const auto& a : s) by_sent.push_back(&a);
  }
  by_answer = by_sent;
  std::sort(by_sent.begin(), by_sent.end(),
            [](const Ack* x, const Ack* y) { return x->sent_ns < y->sent_ns; });
  std::sort(by_answer.begin(), by_answer.end(),
            [](const Ack* x, const Ack* y) { return x->at_ns < y->at_ns; });
  std::map<std::vector<std::size_t>, Rollback> by_suspects;
  std::uint64_t high = 0;
  std::int64_t high_ns = e.start_ns;
  std::size_t answered = 0;
  for (const Ack* a : by_sent) {
    for (; answered < by_answer.size() && by_answer[answered]->at_ns < a->sent_ns; ++answered) {
      if (by_answer[answered]->total > high) {
        high = by_answer[answered]->total;
        high_ns = by_answer[answered]->at_ns;
      }
    }
    if (a->total >= high) continue;
    Rollback r{a->at_ns, high_ns, high, a->total, {}, {}};
    // The last event that began before that answer too: a server may answer on for a while
    // after a fault (an active serving alone, one not yet told it was replaced).
    std::size_t from = e.first_event;
    for (std::size_t i = e.first_event; i < e.end_event && events_[i].at_ns <= high_ns; ++i)
      from = i;
    for (std::size_t i = from; i < e.end_event; ++i) {
      if (events_[i].at_ns > a->at_ns) break;
      r.events.push_back(i);
      if (events_[i].kind == "restart" || events_[i].kind == "era") continue;
      r.faults += (r.faults.empty() ? "" : " + ") + events_[i].kind;
    }
    if (r.faults.empty()) r.faults = "(no fault)";
    auto [it, fresh] = by_suspects.try_emplace(r.events, r);
    if (!fresh && it->second.from - it->second.to < r.from - r.to) it->second = r;
  }
  for (auto& [events, r] : by_suspects) {
    e.rolled_back_after[r.faults] += r.from - r.to;
    e.rolled_back += r.from - r.to;
    e.rollbacks.push_back(r);
  }
  std::sort(e.rollbacks.begin(), e.rollbacks.end(),
            [](const Rollback& x, const Rollback& y) { return x.at_ns < y.at_ns; });
  // Repeated totals, totals at or below the base.
  std::map<std::uint64_t, int> seen;
  for (const auto& a : all) {
    if (e.first_ack_ns == 0 || a.at_ns < e.first_ack_ns) e.first_ack_ns = a.at_ns;
    ++seen[a.total];
    e.max_total = std::max(e.max_total, a.total);
    if (e.loss_ns != 0 && a.at_ns <= e.loss_ns)
      e.max_before_loss = std::max(e.max_before_loss, a.total);
    if (a.total <= e.base) ++e.below_base;
  }
  for (const auto& [total, n] : seen) e.repeated += static_cast<std::uint64_t>(n - 1);
  // Served after the loss of the last in-sync server: a request sent after it was executed by
  // someone (exact: no server that held the era's state was left). Answers to requests sent
  // before are in-flight answers, unless they repeat a total or went back (old state).
  if (e.loss_ns != 0) {
    std::set<const Ack*> went_back;
    high = 0;
    answered = 0;
    for (const Ack* a : by_sent) {
      for (; answered < by_answer.size() && by_answer[answered]->at_ns < a->sent_ns; ++answered)
        high = std::max(high, by_answer[answered]->total);
      if (a->total < high) went_back.insert(a);
    }
    for (const Ack* a : by_sent) {
      if (a->sent_ns > e.loss_ns ||
          (a->at_ns > e.loss_ns && (seen[a->total] > 1 || went_back.count(a) > 0))) {
        ++e.served_after_loss;
      }
    }
  }
  const std::uint64_t expected = e.base + e.acked;
  if (e.final_total) {
    for (const auto& a : all) e.above_final += a.total > *e.final_total ? 1 : 0;
    e.shortfall = expected > *e.final_total ? expected - *e.final_total : 0;
    e.doubled =
        *e.final_total > expected + e.unknown() ? *e.final_total - expected - e.unknown() : 0;
  }
  e.lost = std::max(
      {e.repeated, e.above_final, e.shortfall, e.below_base, e.served_after_loss, e.rolled_back});
  if (e.promoted_total) {
    e.accepted_loss = e.max_total > *e.promoted_total ? e.max_total - *e.promoted_total : 0;
  }
  bool clean = e.lost == 0 && e.doubled == 0 && e.unclean.empty() && e.double_callbacks == 0 &&
               e.open_errors.empty();
  switch (e.end) {
    case EraEnd::kRunEnd:
      e.ok = clean && e.final_total.has_value();
      break;
    case EraEnd::kRefused:
      e.ok = clean && e.actives_after_loss.empty();
      break;
    case EraEnd::kPromoted:
      // The promotion itself is the one takeover after the loss, asked for.
      e.ok = clean && e.actives_after_loss.empty() && e.promoted_total.has_value();
      break;
    case EraEnd::kStuck:
    case EraEnd::kNotStarted:
      e.ok = false;
      break;
  }
}

void FaultRun::print_era(const Era& e) const {
  std::printf("era %d (%.1f-%.1f s, %d faults): %s", e.index, at_s(e.start_ns), at_s(e.end_ns),
              e.faults, std::string(era_end_name(e.end)).c_str());
  if (e.end != EraEnd::kRunEnd) std::printf(" (%s)", e.end_detail.c_str());
  if (e.loss_ns != 0) {
    // The fault that lost the last in-sync server.
    const Event* cause = nullptr;
    for (std::size_t i = e.first_event; i < e.end_event; ++i) {
      if (events_[i].last_kill_ns != 0 && events_[i].last_kill_ns <= e.loss_ns) cause = &events_[i];
    }
    if (cause != nullptr)
      std::printf(" after %s [%s] at %.3f s", cause->kind.c_str(), cause->detail.c_str(),
                  at_s(e.loss_ns));
  }
  std::printf("\n  acked %llu, errors %llu, unanswered %llu",
              static_cast<unsigned long long>(e.acked),
              static_cast<unsigned long long>(e.error_count),
              static_cast<unsigned long long>(e.unanswered));
  if (e.base != 0) std::printf(", from total %llu", static_cast<unsigned long long>(e.base));
  if (e.end == EraEnd::kRunEnd) {
    std::printf(", final total %s (max acked total %llu)",
                e.final_total ? std::to_string(*e.final_total).c_str()
                              : ("unknown: " + e.final_why).c_str(),
                static_cast<unsigned long long>(e.max_total));
  }
  std::printf("\n");
  if (e.end == EraEnd::kRefused) {
    std::printf(
        "  %llu acked lost by the double fault (refused, not silently); after the loss: %llu "
        "served, %zu took over\n",
        static_cast<unsigned long long>(e.acked),
        static_cast<unsigned long long>(e.served_after_loss), e.actives_after_loss.size());
  }
  if (e.end == EraEnd::kPromoted) {
    std::printf(
        "  promoted: max acked total before the loss %llu, promoted server's total %s, accepted "
        "loss %llu; after the loss: %llu served\n",
        static_cast<unsigned long long>(e.max_before_loss),
        e.promoted_total ? std::to_string(*e.promoted_total).c_str() : "unknown",
        static_cast<unsigned long long>(e.accepted_loss),
        static_cast<unsigned long long>(e.served_after_loss));
  }
  for (const auto& [m, n] : e.errors)
    std::printf("  error x%llu: %s\n", static_cast<unsigned long long>(n), m.c_str());
  for (const auto& o : e.open_errors) std::printf("  session did not open: %s\n", o.c_str());
  if (!e.active_found)
    std::printf("  no active server answered the lookup at the end (%s)\n", e.end_roles.c_str());
  if (e.double_callbacks > 0)
    std::printf("  %llu requests answered twice by the session\n",
                static_cast<unsigned long long>(e.double_callbacks));
  for (const auto& a : e.actives_after_loss)
    std::printf("  took over after the loss: %s\n", a.c_str());
  for (const auto& u : e.unclean)
    std::printf("  unclean takeover nobody asked for: %s\n", u.c_str());
  if (e.lost > 0 || e.doubled > 0) {
    std::printf(
        "  lost: %llu repeated totals, %llu at or below the base, %llu acked totals above the "
        "final, final short of acked by %llu, %llu served after the loss, counter went back by "
        "%llu; doubled %llu\n",
        static_cast<unsigned long long>(e.repeated), static_cast<unsigned long long>(e.below_base),
        static_cast<unsigned long long>(e.above_final),
        static_cast<unsigned long long>(e.shortfall),
        static_cast<unsigned long long>(e.served_after_loss),
        static_cast<unsigned long long>(e.rolled_back), static_cast<unsigned long long>(e.doubled));
  }
  for (const auto& [k, n] : e.rolled_back_after) {
    std::printf("  counter went back by %llu after: %s\n", static_cast<unsigned long long>(n),
                k.c_str());
  }
  for (std::size_t i = 0; i < std::min<std::size_t>(e.rollbacks.size(), 10); ++i) {
    const Rollback& r = e.rollbacks[i];
    std::printf("  rollback at %.3f s: total %llu -> %llu; since the answer before (%.3f s):",
                at_s(r.at_ns), static_cast<unsigned long long>(r.from),
                static_cast<unsigned long long>(r.to), at_s(r.since_ns));
    for (std::size_t ev : r.events) {
      std::printf(" [%.3f %s: %s]", at_s(events_[ev].at_ns), events_[ev].kind.c_str(),
                  events_[ev].detail.c_str());
    }
    std::printf("\n");
  }
  std::printf("  era %d verdict: %s\n", e.index, e.ok ? "ok" : "FAIL");
}

nlohmann::json FaultRun::era_json(const Era& e) const {
  auto opt = [](const std::optional<std::uint64_t>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json();
  };
  nlohmann::json j{
      {"era", e.index},
      {"start_s", at_s(e.start_ns)},
      {"end_s", at_s(e.end_ns)},
      {"faults", e.faults},
      {"ended", era_end_name(e.end)},
      {"end_detail", e.end_detail},
      {"loss_at_s", e.loss_ns != 0 ? nlohmann::json(at_s(e.loss_ns)) : nlohmann::json()},
      {"base_total", e.base},
      {"first_ack_after_s", e.first_ack_ns != 0
                                ? nlohmann::json(at_s(e.first_ack_ns) - at_s(e.start_ns))
                                : nlohmann::json()},
      {"acked", e.acked},
      {"errors", e.error_count},
      {"unanswered", e.unanswered},
      {"unknown_outcome", e.unknown()},
      {"errors_by_message", e.errors},
      {"session_failovers", e.failovers},
      {"double_callbacks", e.double_callbacks},
      {"open_errors", e.open_errors},
      {"final_total", opt(e.final_total)},
      {"final_read_error", e.final_total ? "" : e.final_why},
      {"max_acked_total", e.max_total},
      {"max_acked_total_before_loss", e.max_before_loss},
      {"promoted_total", opt(e.promoted_total)},
      {"accepted_loss", e.accepted_loss},
      {"repeated_totals", e.repeated},
      {"at_or_below_base", e.below_base},
      {"acked_above_final", e.above_final},
      {"final_short_of_acked", e.shortfall},
      {"served_after_loss", e.served_after_loss},
      {"took_over_after_loss", e.actives_after_loss},
      {"unclean_takeovers", e.unclean},
      {"counter_went_back_by", e.rolled_back},
      {"counter_went_back_after", e.rolled_back_after},
      {"lost", e.lost},
      {"lost_to_double_fault", e.end == EraEnd::kRefused ? e.acked : 0},
      {"doubled", e.doubled},
      {"active_at_end", e.active_found},
      {"roles_at_end", e.end_roles},
      {"ok", e.ok}};
  j["rollbacks"] = nlohmann::json::array();
  for (const auto& r : e.rollbacks) {
    j["rollbacks"].push_back({{"at_s", at_s(r.at_ns)},
                              {"since_s", at_s(r.since_ns)},
                              {"from_total", r.from},
                              {"to_total", r.to},
                              {"faults", r.faults},
                              {"events", r.events}});
  }
  return j;
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
    return 1;
  }
  if (log_dir_.empty()) {
    char tmpl[] = "/tmp/viaduct-faults-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::perror("fault-run: mkdtemp");
      return 1;
    }
    log_dir_ = tmpl;
  }
  start_ns_ = steady_now_ns();
  end_ns_ = start_ns_ + o_.max_seconds * 1'000'000'000LL;
  // Leave a quarter of the run (at most 60 s) for bringing a server back and the final read.
  fault_deadline_ns_ = end_ns_ - std::min(60, o_.max_seconds / 4) * 1'000'000'000LL;
  std::printf("fault-run seed=%llu faults=%d sessions=%d depth=%d hog=%d on-double-fault=%s kinds=",
              static_cast<unsigned long long>(seed_), o_.faults, o_.sessions, o_.depth, o_.hog_cpus,
              o_.promote_on_double_fault ? "promote" : "refuse");
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
  if (!begin_era()) {
    std::fprintf(stderr, "fault-run: the pair did not start (ports %d..%d busy?); logs in %s\n",
                 o_.base_port, o_.base_port + 3, log_dir_.c_str());
    stop_hog();
    return 1;
  }
  std::uint64_t acked_before = 0;  // in eras already over, for the progress lines
  std::uint64_t errors_before = 0;
  std::size_t reported_eras = 0;

  // The faults, each after a random stretch of load; a double fault ends the era, and the next
  // one starts with a fresh pair.
  bool era_open = true;
  while (faults_ < o_.faults && !out_of_time()) {
    if (!era_open) {
      if (!wait_ports_free()) {
        std::fprintf(stderr, "fault-run: ports %d..%d still busy after %d s\n", o_.base_port,
                     o_.base_port + 3, kPortsFreeTimeoutMs / 1000);
      }
      if (!begin_era()) break;
      era_open = true;
    }
    restart_dead(false);
    sleep_ms(uniform(o_.min_load_ms, o_.max_load_ms));
    check_crashes();
    std::vector<FaultKind> eligible;
    int running = 0;
    for (auto& s : servers_) running += s.state == ServerState::kRunning ? 1 : 0;
    if (running == 0) {
      // Both gone without a fault of ours (crashes, or slow starts): nothing serves this era.
      end_era(EraEnd::kStuck, "both servers gone without a double fault", steady_now_ns());
      era_open = false;
    } else {
      for (FaultKind k : kinds_) {
        if (running == 2 || (running == 1 && !needs_both(k))) eligible.push_back(k);
      }
      if (eligible.empty()) continue;  // the restart policy brings someone back next round
      inject(eligible[static_cast<std::size_t>(uniform(0, static_cast<int>(eligible.size()) - 1))]);
      std::string seen;
      Watch w = watch_after_fault(&seen);
      const Event& last = events_.back();
      std::int64_t loss_ns = last.last_kill_ns != 0 ? last.last_kill_ns : last.at_ns;
      if (w == Watch::kRefused && o_.promote_on_double_fault &&
          (servers_[0].state != ServerState::kDead || servers_[1].state != ServerState::kDead)) {
        if (!promote_survivor(loss_ns, seen)) {
          for (auto& s : servers_) kill(s);
          era_open = false;
        }
      } else if (w != Watch::kServing) {
        end_era(w == Watch::kRefused ? EraEnd::kRefused : EraEnd::kStuck, seen, loss_ns);
        era_open = false;
      }
    }
    // Eras that ended this round (a promotion ends one and opens the next).
    for (std::size_t done = eras_.size() - (era_open ? 1 : 0); reported_eras < done;
         ++reported_eras) {
      const Era& ended = eras_[reported_eras];
      for (const auto& acks : ended.session_acks) acked_before += acks.size();
      errors_before += ended.error_count;
      std::fprintf(stderr, "fault-run: era %d ended %s after %d faults: %s\n", ended.index,
                   std::string(era_end_name(ended.end)).c_str(), ended.faults,
                   ended.end_detail.c_str());
    }
    if (faults_ % 10 == 0) {
      std::uint64_t acked_now = acked_before + (load_ ? load_->acked() : 0);
      std::uint64_t errors_now = errors_before + (load_ ? load_->errors() : 0);
      std::fprintf(stderr,
                   "fault-run: %d/%d faults, %.1f s, era %zu, acked %llu, errors %llu, restarts "
                   "%d, crashes %zu, last: %s %s; now A %s, B %s\n",
                   faults_, o_.faults, elapsed_s(), eras_.size(),
                   static_cast<unsigned long long>(acked_now),
                   static_cast<unsigned long long>(errors_now), restarts_, crashes_.size(),
                   events_.back().kind.c_str(), events_.back().detail.c_str(),
                   std::string(state_name(servers_[0].state)).c_str(),
                   std::string(state_name(servers_[1].state)).c_str());
    }
  }
  bool timed_out = faults_ < o_.faults;
  if (era_open) finish_run_era(timed_out);
  for (auto& s : servers_) kill(s);
  stop_hog();

  // The verdicts, era by era.
  std::uint64_t acked = 0, unknown = 0, final_sum = 0, lost = 0, doubled = 0, lost_to_double = 0,
                accepted_loss = 0, errors_total = 0, unanswered = 0;
  int refused_eras = 0, promoted_eras = 0;
  bool any_final = false, final_unknown = false, all_ok = true;
  std::map<std::string, std::uint64_t> errors;
  for (auto& e : eras_) {
    judge(e);
    acked += e.acked;
    unknown += e.unknown();
    errors_total += e.error_count;
    unanswered += e.unanswered;
    for (const auto& [m, n] : e.errors) errors[m] += n;
    lost += e.lost;
    doubled += e.doubled;
    all_ok = all_ok && e.ok;
    if (e.end == EraEnd::kRunEnd) {
      any_final = true;
      if (e.final_total) {
        final_sum += *e.final_total;
      } else {
        final_unknown = true;
      }
    }
    if (e.end == EraEnd::kRefused) {
      ++refused_eras;
      lost_to_double += e.acked;
    }
    if (e.end == EraEnd::kPromoted) {
      ++promoted_eras;
      accepted_loss += e.accepted_loss;
      lost_to_double += e.accepted_loss;
    }
  }
  bool pass = all_ok && crashes_.empty() && !timed_out;

  // What the sessions saw between one event and the next: how many answers, which totals.
  struct Window {
    std::uint64_t acks = 0, min_total = UINT64_MAX, max_total = 0;
  };
  std::vector<Window> windows(events_.size());
  for (const auto& e : eras_) {
    for (const auto& acks : e.session_acks) {
      for (const auto& a : acks) {
        auto it = std::upper_bound(events_.begin(), events_.end(), a.at_ns,
                                   [](std::int64_t t, const Event& ev) { return t < ev.at_ns; });
        if (it == events_.begin()) continue;
        Window& w = windows[static_cast<std::size_t>(it - events_.begin()) - 1];
        ++w.acks;
        w.min_total = std::min(w.min_total, a.total);
        w.max_total = std::max(w.max_total, a.total);
      }
    }
  }

  // The report.
  std::printf("faults: %d in %.1f s (", faults_, elapsed_s());
  bool first = true;
  for (const auto& [k, n] : faults_by_kind_) {
    std::printf("%s%s %d", first ? "" : ", ", k.c_str(), n);
    first = false;
  }
  std::printf("); %d hit the active; %d restarts%s\n", hit_active_, restarts_,
              timed_out ? "; STOPPED EARLY (--max-seconds or interrupted)" : "");
  for (const auto& e : eras_) print_era(e);
  std::printf("acked %llu, errors %llu, unanswered %llu, %d eras (%d refused, %d promoted)\n",
              static_cast<unsigned long long>(acked), static_cast<unsigned long long>(errors_total),
              static_cast<unsigned long long>(unanswered), static_cast<int>(eras_.size()),
              refused_eras, promoted_eras);
  for (const auto& s : slow_starts_) std::printf("slow start: %s\n", s.c_str());
  for (const auto& c : crashes_) {
    std::printf("crash: server %c (start %d) %s\n  last stdout:\n%s\n  last stderr:\n%s\n", c.label,
                c.start, c.how.c_str(), c.stdout_tail.c_str(), c.stderr_tail.c_str());
  }
  std::string final_text = final_unknown ? "unknown"
                           : any_final   ? std::to_string(final_sum)
                                         : "none";
  std::printf(
      "fault-run seed=%llu faults=%d eras=%zu acked=%llu errors=%llu final=%s lost=%llu "
      "doubled=%llu crashes=%zu refused_eras=%d lost_to_double_faults=%llu verdict=%s\n",
      static_cast<unsigned long long>(seed_), faults_, eras_.size(),
      static_cast<unsigned long long>(acked), static_cast<unsigned long long>(unknown),
      final_text.c_str(), static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(doubled), crashes_.size(), refused_eras,
      static_cast<unsigned long long>(lost_to_double), pass ? "PASS" : "FAIL");
  std::fflush(stdout);

  if (!o_.json_path.empty()) {
    nlohmann::json j{
        {"seed", seed_},
        {"faults", faults_},
        {"faults_requested", o_.faults},
        {"faults_by_kind", faults_by_kind_},
        {"faults_hit_active", hit_active_},
        {"restarts", restarts_},
        {"sessions", o_.sessions},
        {"depth", o_.depth},
        {"hog_cpus", o_.hog_cpus},
        {"on_double_fault", o_.promote_on_double_fault ? "promote" : "refuse"},
        {"server_args", o_.server_args},
        {"seconds", elapsed_s()},
        {"stopped_early", timed_out},
        {"eras", eras_.size()},
        {"refused_eras", refused_eras},
        {"promoted_eras", promoted_eras},
        {"lost_to_double_faults", lost_to_double},
        {"accepted_loss", accepted_loss},
        {"acked", acked},
        {"errors", errors_total},
        {"unanswered", unanswered},
        {"unknown_outcome", unknown},
        {"errors_by_message", errors},
        {"final_total", any_final && !final_unknown ? nlohmann::json(final_sum) : nlohmann::json()},
        {"lost", lost},
        {"doubled", doubled},
        {"slow_starts", slow_starts_},
        {"verdict", pass ? "PASS" : "FAIL"},
        {"log_dir", log_dir_}};
    j["era_reports"] = nlohmann::json::array();
    for (const auto& e : eras_) j["era_reports"].push_back(era_json(e));
    j["crashes"] = nlohmann::json::array();
    for (const auto& c : crashes_) {
      j["crashes"].push_back({{"server", std::string(1, c.label)},
                              {"start", c.start},
                              {"how", c.how},
                              {"stdout_tail", c.stdout_tail},
                              {"stderr_tail", c.stderr_tail}});
    }
    j["events"] = nlohmann::json::array();
    for (std::size_t i = 0; i < events_.size(); ++i) {
      const Event& e = events_[i];
      j["events"].push_back(
          {{"at_s", at_s(e.at_ns)},
           {"end_s", at_s(e.end_ns)},
           {"kind", e.kind},
           {"detail", e.detail},
           {"era", e.era},
           {"hit_active", e.hit_active},
           {"last_kill_at_s",
            e.last_kill_ns != 0 ? nlohmann::json(at_s(e.last_kill_ns)) : nlohmann::json()},
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
