#include "tools/perf/latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace viaduct::perf {
namespace {

constexpr std::uint64_t kExact = std::uint64_t{1} << LatencyHistogram::kSubBucketBits;  // 256
constexpr std::uint64_t kHalf = kExact / 2;  // buckets per power of two above kExact
constexpr std::uint64_t kLargest = (std::uint64_t{1} << LatencyHistogram::kMaxExponent) - 1;
constexpr std::size_t kBuckets =
    kExact + (LatencyHistogram::kMaxExponent - LatencyHistogram::kSubBucketBits) * kHalf;

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBuckets, 0) {}

// Below kExact a value is its own bucket. Above, a value with its top bit at position msb keeps
// its kSubBucketBits top bits: (value >> shift) lies in [kHalf, kExact), one of kHalf buckets of
// that power of two, each 2^shift wide, so the error is below 2^shift / (kHalf * 2^shift).
std::size_t LatencyHistogram::index_of(std::uint64_t value) {
  if (value < kExact) return static_cast<std::size_t>(value);
  int msb = 63 - std::countl_zero(value);
  int shift = msb - (kSubBucketBits - 1);
  std::uint64_t sub = value >> shift;  // in [kHalf, kExact)
  return static_cast<std::size_t>(kExact + static_cast<std::uint64_t>(shift - 1) * kHalf +
                                  (sub - kHalf));
}

std::uint64_t LatencyHistogram::upper_edge(std::size_t index) {
  if (index < kExact) return index;
  std::uint64_t group = (index - kExact) / kHalf;
  std::uint64_t sub = kHalf + (index - kExact) % kHalf;
  int shift = static_cast<int>(group) + 1;
  return ((sub + 1) << shift) - 1;
}

void LatencyHistogram::record(std::int64_t value) {
  auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(value, 0));
  v = std::min(v, kLargest);
  ++counts_[index_of(v)];
  auto clamped = static_cast<std::int64_t>(v);
  if (count_ == 0 || clamped < min_) min_ = clamped;
  max_ = std::max(max_, clamped);
  ++count_;
  sum_ += static_cast<long double>(clamped);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

double LatencyHistogram::mean() const {
  return count_ == 0 ? 0 : static_cast<double>(sum_ / static_cast<long double>(count_));
}

std::int64_t LatencyHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      auto edge = static_cast<std::int64_t>(upper_edge(i));
      return std::clamp(edge, min_, max_);
    }
  }
  return max_;
}

}  // namespace viaduct::perf
