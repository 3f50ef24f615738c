// Google Benchmark suites for the channel over ofi+tcp on loopback: round-trip latency, message
// rate with many requests outstanding, and large-transfer bandwidth. The server runs busy-polling
// on its own thread (2 cores: one each), as `viaduct perf server` does.
//
//   build/bench/channel_bench --benchmark_format=json
#include <benchmark/benchmark.h>

#include <chrono>

#include "tests/transport/test_support.hpp"

namespace {

using namespace viaduct;
using namespace viaduct::transport;

struct Fixture {
  perf::PerfHandler handler;
  testing::ServerThread server{"ofi+tcp://127.0.0.1:0", &handler};
  std::unique_ptr<Domain> domain;
  std::unique_ptr<Channel> channel;
  Fixture() {
    domain = std::move(Domain::open(server.address()).value());
    channel = std::move(Channel::connect(*domain, server.address(), {}, 5000).value());
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_RoundTrip(benchmark::State& state) {
  auto size = static_cast<std::size_t>(state.range(0));
  auto& ch = *fixture().channel;
  auto request = perf::make_request(size, size);
  std::vector<std::byte> response(size);
  for (auto _ : state) {
    auto r = ch.call(request, response, 10000);
    if (!r) state.SkipWithError(r.status().to_string().c_str());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size * 2));
  state.counters["one_way_us"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["one_way_us"] = benchmark::Counter(state.counters["one_way_us"] * 1e6);
}
BENCHMARK(BM_RoundTrip)->Arg(64)->Arg(4096)->Arg(65536)->UseRealTime();

void BM_MessageRate(benchmark::State& state) {
  auto depth = static_cast<std::uint32_t>(state.range(0));
  auto& ch = *fixture().channel;
  std::uint64_t messages = 0;
  for (auto _ : state) {
    auto r = perf::measure_rate(ch, 64, depth, 0.2);
    if (!r) {
      state.SkipWithError(r.status().to_string().c_str());
      break;
    }
    messages += r->messages;
    state.SetIterationTime(r->seconds);
  }
  state.counters["msgs_per_s"] =
      benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MessageRate)->Arg(1)->Arg(32)->Arg(256)->UseManualTime()->Iterations(5);

void BM_Bandwidth(benchmark::State& state) {
  auto size = static_cast<std::size_t>(state.range(0));
  auto& ch = *fixture().channel;
  for (auto _ : state) {
    auto r = perf::measure_bandwidth(ch, size, 8, 64);
    if (!r) {
      state.SkipWithError(r.status().to_string().c_str());
      break;
    }
    state.SetIterationTime(r->seconds);
    state.SetBytesProcessed(state.bytes_processed() +
                            static_cast<std::int64_t>(size * r->transfers));
  }
}
BENCHMARK(BM_Bandwidth)->Arg(1 << 20)->Arg(16 << 20)->UseManualTime()->Iterations(5);

}  // namespace

BENCHMARK_MAIN();
