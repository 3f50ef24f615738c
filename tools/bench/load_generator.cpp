#include "tools/bench/load_generator.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "failover/session.hpp"
#include "tools/perf/latency_histogram.hpp"
#include "transport/clock.hpp"
#include "transport/polite_spin.hpp"

namespace viaduct::bench {
namespace {

struct Slot {
  struct State* state = nullptr;
  std::uint64_t seq = 0;
  std::int64_t sent_ns = 0;
  bool busy = false;
};

struct State {
  perf::LatencyHistogram latencies_ns;  // bounded: 37 KiB whatever the run's length
  std::uint64_t answered = 0, errors = 0, wrong = 0, doubled = 0;
  std::string first_error;
  std::uint32_t size = 0;
};

void on_answer(void* user, const transport::Response& r) {
  auto* slot = static_cast<Slot*>(user);
  State& s = *slot->state;
  if (!slot->busy) {
    ++s.doubled;  // a second answer to the same request
    return;
  }
  slot->busy = false;
  if (!r.status) {
    if (s.errors++ == 0) s.first_error = r.status.to_string();
    return;
  }
  std::uint64_t echoed = 0;
  if (r.payload.size() == s.size) std::memcpy(&echoed, r.payload.data(), 8);
  if (echoed != slot->seq) ++s.wrong;
  ++s.answered;
  s.latencies_ns.record(steady_now_ns() - slot->sent_ns);
}

double quantile_us(const perf::LatencyHistogram& h, double q) {
  return static_cast<double>(h.quantile(q)) / 1e3;
}

}  // namespace

int run_load(const LoadOptions& o, const std::atomic<bool>& stop) {
  if (o.depth == 0 || o.size < 8) {
    std::cerr << "viaduct load: --depth must be >= 1 and --size >= 8\n";
    return 2;
  }
  auto session = failover::Session::open({o.name, o.cluster, o.depth, o.server_key});
  if (!session) {
    std::cerr << "viaduct load: " << session.status().to_string() << "\n";
    return 1;
  }
  // One call first: the initial lookup, connect and provider start-up (~100 ms the first time a
  // process opens libfabric) are not the service's latency.
  std::vector<std::byte> warm(o.size), warm_out(o.size);
  if (auto r = session.value()->call(warm, warm_out); !r) {
    std::cerr << "viaduct load: " << r.status().to_string() << "\n";
    return 1;
  }
  State state;
  state.size = o.size;
  std::vector<Slot> slots(o.depth);
  std::vector<std::byte> payload(o.size);
  std::uint64_t next_seq = 1;
  std::int64_t start = steady_now_ns();
  std::int64_t end = start + static_cast<std::int64_t>(o.seconds * 1e9);
  std::int64_t next_report = start + static_cast<std::int64_t>(o.report_every_s * 1e9);
  std::uint64_t reported = 0;
  PoliteSpin spin;
  for (;;) {
    std::int64_t now = steady_now_ns();
    bool sending = now < end && !stop.load(std::memory_order_relaxed);
    bool idle = true;
    for (auto& slot : slots) {
      if (slot.busy) {
        idle = false;
        continue;
      }
      if (!sending) continue;
      slot = {&state, next_seq++, now, true};
      std::memcpy(payload.data(), &slot.seq, 8);
      if (!session.value()->call_async(payload, on_answer, &slot).is_ok()) {
        slot.busy = false;
        break;
      }
      idle = false;
    }
    if (!sending && idle) break;
    spin.after_poll(session.value()->poll());
    if (o.report_every_s > 0 && now >= next_report && !o.json) {
      std::printf("%6.1f s  %8.0f req/s  errors %llu  failovers %llu  server %s\n",
                  static_cast<double>(now - start) / 1e9,
                  static_cast<double>(state.answered - reported) / o.report_every_s,
                  static_cast<unsigned long long>(state.errors),
                  static_cast<unsigned long long>(session.value()->failovers()),
                  session.value()->server().c_str());
      std::fflush(stdout);
      reported = state.answered;
      next_report += static_cast<std::int64_t>(o.report_every_s * 1e9);
    }
  }
  double elapsed = static_cast<double>(steady_now_ns() - start) / 1e9;
  double p50 = quantile_us(state.latencies_ns, 0.50);
  double p99 = quantile_us(state.latencies_ns, 0.99);
  double p999 = quantile_us(state.latencies_ns, 0.999);
  double mx = static_cast<double>(state.latencies_ns.max()) / 1e3;
  const auto& f = session.value()->last_failover();
  bool failed = state.errors != 0 || state.wrong != 0 || state.doubled != 0;
  if (o.json) {
    nlohmann::json summary{
        {"name", o.name},
        {"depth", o.depth},
        {"size_bytes", o.size},
        {"seconds", elapsed},
        {"answered", state.answered},
        {"requests_per_s", static_cast<double>(state.answered) / elapsed},
        {"latency_us", {{"p50", p50}, {"p99", p99}, {"p999", p999}, {"max", mx}}},
        {"errors", state.errors},
        {"wrong_answers", state.wrong},
        {"doubled_answers", state.doubled},
        {"failovers", session.value()->failovers()},
        {"last_failover_ms", f.total_ms},
        {"server", session.value()->server()},
        {"epoch", session.value()->epoch()}};
    if (failed) {
      summary["error"] = {{"message", state.errors > 0 ? "first error: " + state.first_error
                                                       : std::string("wrong or doubled answers")}};
    }
    if (o.print_json) {
      o.print_json(std::move(summary));
    } else {
      std::cout << summary.dump(2) << "\n";
    }
  } else {
    std::printf(
        "%llu answered in %.1f s: %.0f req/s, latency p50 %.1f us p99 %.1f us p99.9 %.1f us max "
        "%.1f us; errors %llu, wrong %llu, doubled %llu; failovers %llu (last %.2f ms); server "
        "%s epoch %llu\n",
        static_cast<unsigned long long>(state.answered), elapsed,
        static_cast<double>(state.answered) / elapsed, p50, p99, p999, mx,
        static_cast<unsigned long long>(state.errors), static_cast<unsigned long long>(state.wrong),
        static_cast<unsigned long long>(state.doubled),
        static_cast<unsigned long long>(session.value()->failovers()), f.total_ms,
        session.value()->server().c_str(),
        static_cast<unsigned long long>(session.value()->epoch()));
    if (state.errors > 0) std::printf("first error: %s\n", state.first_error.c_str());
  }
  return failed ? 1 : 0;
}

}  // namespace viaduct::bench
