// The tools' one percentile engine: bounded memory, exact min and max, quantiles within 1/128 of
// the exact (sorted) answer.
#include "tools/perf/latency_histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace viaduct::perf {
namespace {

TEST(LatencyHistogram, RandomLatencies_QuantilesWithinOnePercentOfSorted_MinMaxExact) {
  std::mt19937_64 rng(7);
  // A long-tailed mix: most around 20 us, some at 1-50 ms, a few at seconds.
  std::lognormal_distribution<double> body(std::log(20'000.0), 0.5);
  std::vector<std::int64_t> values;
  LatencyHistogram h;
  for (int i = 0; i < 200'000; ++i) {
    double v = body(rng);
    if (i % 100 == 0) v *= 500;
    if (i % 10'000 == 0) v *= 1000;
    auto ns = static_cast<std::int64_t>(v);
    values.push_back(ns);
    h.record(ns);
  }
  std::sort(values.begin(), values.end());
  EXPECT_EQ(h.count(), values.size());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
  for (double q : {0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
    std::int64_t exact = values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
    std::int64_t got = h.quantile(q);
    EXPECT_GE(got, exact) << "q " << q;  // the bucket's upper edge
    EXPECT_LE(static_cast<double>(got - exact), static_cast<double>(exact) / 128.0 + 1)
        << "q " << q << " exact " << exact << " got " << got;
  }
}

TEST(LatencyHistogram, SmallValuesExact_NegativeAsZero_HugeClamped_MergeAdds) {
  LatencyHistogram a, b;
  for (int v = 0; v < 256; ++v) a.record(v);
  EXPECT_EQ(a.quantile(0.5), 127);  // rank 128 of 0..255
  b.record(-5);
  b.record(std::int64_t{1} << 62);
  EXPECT_EQ(b.min(), 0);
  EXPECT_EQ(b.max(), (std::int64_t{1} << LatencyHistogram::kMaxExponent) - 1);
  a.merge(b);
  EXPECT_EQ(a.count(), 258u);
  EXPECT_EQ(a.max(), b.max());
  LatencyHistogram empty;
  EXPECT_EQ(empty.quantile(0.99), 0);
  EXPECT_EQ(empty.mean(), 0);
}

}  // namespace
}  // namespace viaduct::perf
