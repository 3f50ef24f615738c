#include "tools/perf/perf.hpp"

#include "tools/perf/latency_histogram.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace viaduct::perf {

namespace {
constexpr char kPrefix[4] = {'P', 'E', 'R', 'F'};
constexpr std::size_t kMaxPerfResponse = 1ULL << 30;
using Clock = std::chrono::steady_clock;

}  // namespace

PerfHandler::PerfHandler() = default;

void PerfHandler::on_request(transport::Channel& channel,
                             const transport::IncomingRequest& request) {
  ++served_;
  auto p = request.payload;
  if (p.size() >= 8 && std::memcmp(p.data(), kPrefix, 4) == 0) {
    auto want = static_cast<std::size_t>(transport::load_le<std::uint32_t>(p.data() + 4));
    want = std::min(want, kMaxPerfResponse);
    // Grown once per new maximum size; steady-state serving does not allocate.
    if (response_.size() < want) response_.resize(want);
    (void)channel.respond(request.request_id, std::span(response_.data(), want));
    return;
  }
  (void)channel.respond(request.request_id, p);
}

std::vector<std::byte> make_request(std::size_t size, std::size_t response_size) {
  std::vector<std::byte> r(size);
  for (std::size_t i = 0; i < size; ++i) r[i] = static_cast<std::byte>(i * 131 + 7);
  if (size >= 8) {
    std::memcpy(r.data(), kPrefix, 4);
    transport::store_le<std::uint32_t>(r.data() + 4, static_cast<std::uint32_t>(response_size));
  }
  return r;
}

Result<LatencyResult> measure_latency(transport::Channel& channel, std::size_t size,
                                      std::uint64_t iterations, std::uint64_t warmup) {
  auto request = make_request(size, size);
  std::vector<std::byte> response(size + 64);
  LatencyHistogram rtts_ns;  // bounded, whatever --iterations
  for (std::uint64_t i = 0; i < warmup + iterations; ++i) {
    auto t0 = Clock::now();
    auto r = channel.call(request, response, 10000);
    auto t1 = Clock::now();
    if (!r) return r.status();
    if (i >= warmup) {
      rtts_ns.record(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    }
  }
  auto us = [](std::int64_t ns) { return static_cast<double>(ns) / 1e3; };
  LatencyResult out;
  out.size = size;
  out.iterations = iterations;
  out.rtt_p50_us = us(rtts_ns.quantile(0.50));
  out.rtt_p99_us = us(rtts_ns.quantile(0.99));
  out.rtt_min_us = us(rtts_ns.min());
  out.rtt_max_us = us(rtts_ns.max());
  out.rtt_mean_us = rtts_ns.mean() / 1e3;
  return out;
}

namespace {
struct Outstanding {
  std::uint64_t done = 0;
  Status error;
};
void count_done(void* user, const transport::Response& r) {
  auto* o = static_cast<Outstanding*>(user);
  ++o->done;
  if (!r.status && o->error.is_ok()) o->error = r.status;
}

// Keeps `depth` requests in flight until `stop` says so; returns completed count.
Result<std::uint64_t> pump(transport::Channel& channel, std::span<const std::byte> request,
                           std::uint32_t depth, const auto& stop) {
  Outstanding o;
  std::uint64_t issued = 0;
  while (!stop(o.done)) {
    while (issued - o.done < depth) {
      Status s = channel.call_async(request, count_done, &o);
      if (s.code() == Code::kWouldBlock) break;
      if (!s) return s;
      ++issued;
    }
    channel.poll();
    if (!o.error.is_ok()) return o.error;
  }
  while (o.done < issued) {
    channel.poll();
    if (!channel.healthy()) return channel.error();
  }
  return o.done;
}
}  // namespace

Result<RateResult> measure_rate(transport::Channel& channel, std::size_t size, std::uint32_t depth,
                                double seconds) {
  auto request = make_request(size, 8);
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  unsigned tick = 0;
  auto done = pump(channel, request, depth,
                   [&](std::uint64_t) { return (++tick & 63) == 0 && Clock::now() >= end; });
  if (!done) return done.status();
  RateResult r;
  r.size = size;
  r.depth = depth;
  r.messages = done.value();
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

Result<BandwidthResult> measure_bandwidth(transport::Channel& channel, std::size_t size,
                                          std::uint32_t depth, std::uint64_t transfers,
                                          double max_seconds) {
  auto request = make_request(size, 8);
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(max_seconds);
  std::uint64_t issued_limit = transfers;
  unsigned tick = 0;
  // Ends after `transfers`, or at the time cap (small messages: 256 MiB of 64 B ones took ~20 s).
  auto done = pump(channel, request, depth, [&](std::uint64_t d) {
    return d + depth >= issued_limit || ((++tick & 63) == 0 && Clock::now() >= end);
  });
  if (!done) return done.status();
  BandwidthResult r;
  r.size = size;
  r.depth = depth;
  r.transfers = done.value();
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

nlohmann::json to_json(const LatencyResult& r) {
  return {
      {"test", "latency"},          {"size_bytes", r.size},       {"iterations", r.iterations},
      {"rtt_p50_us", r.rtt_p50_us}, {"rtt_p99_us", r.rtt_p99_us}, {"rtt_mean_us", r.rtt_mean_us},
      {"rtt_min_us", r.rtt_min_us}, {"rtt_max_us", r.rtt_max_us}, {"one_way_us", r.one_way_us()}};
}
nlohmann::json to_json(const RateResult& r) {
  return {{"test", "message_rate"}, {"size_bytes", r.size}, {"depth", r.depth},
          {"messages", r.messages}, {"seconds", r.seconds}, {"mmsgs_per_s", r.mmsgs_per_s()}};
}
nlohmann::json to_json(const BandwidthResult& r) {
  return {{"test", "bandwidth"},      {"size_bytes", r.size}, {"depth", r.depth},
          {"transfers", r.transfers}, {"seconds", r.seconds}, {"mb_per_s", r.mb_per_s()}};
}

}  // namespace viaduct::perf
