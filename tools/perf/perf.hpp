// The measurement engine behind `viaduct perf` and the benchmarks: an echo-style server handler
// and latency / message-rate / bandwidth loops over a Channel, like perftest's ib_send_lat/_bw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "transport/channel.hpp"

namespace viaduct::perf {

// Answers a request with as many bytes as its 8-byte "PERF" prefix asks for, or echoes it.
class PerfHandler final : public transport::RequestHandler {
 public:
  PerfHandler();
  void on_request(transport::Channel& channel, const transport::IncomingRequest& request) override;
  std::uint64_t served() const { return served_; }

 private:
  std::vector<std::byte> response_;
  std::uint64_t served_ = 0;
};

// Builds a request of `size` bytes asking for a `response_size`-byte answer (sizes >= 8 only; a
// smaller request is echoed).
std::vector<std::byte> make_request(std::size_t size, std::size_t response_size);

struct LatencyResult {
  std::size_t size = 0;
  std::uint64_t iterations = 0;
  double rtt_p50_us = 0, rtt_p99_us = 0, rtt_mean_us = 0, rtt_min_us = 0, rtt_max_us = 0;
  // Half the median round trip: what fi_pingpong and ib_send_lat report as "usec/xfer".
  [[nodiscard]] double one_way_us() const { return rtt_p50_us / 2; }
};
struct RateResult {
  std::size_t size = 0;
  std::uint32_t depth = 0;
  std::uint64_t messages = 0;
  double seconds = 0;
  [[nodiscard]] double mmsgs_per_s() const { return messages / seconds / 1e6; }
};
struct BandwidthResult {
  std::size_t size = 0;
  std::uint32_t depth = 0;
  std::uint64_t transfers = 0;
  double seconds = 0;
  [[nodiscard]] double mb_per_s() const {
    return static_cast<double>(size) * transfers / seconds / 1e6;
  }
};

Result<LatencyResult> measure_latency(transport::Channel& channel, std::size_t size,
                                      std::uint64_t iterations, std::uint64_t warmup);
Result<RateResult> measure_rate(transport::Channel& channel, std::size_t size, std::uint32_t depth,
                                double seconds);
// Up to `transfers` requests of `size` bytes, `depth` in flight; stops early at max_seconds.
Result<BandwidthResult> measure_bandwidth(transport::Channel& channel, std::size_t size,
                                          std::uint32_t depth, std::uint64_t transfers,
                                          double max_seconds = 10);

nlohmann::json to_json(const LatencyResult& r);
nlohmann::json to_json(const RateResult& r);
nlohmann::json to_json(const BandwidthResult& r);

}  // namespace viaduct::perf
