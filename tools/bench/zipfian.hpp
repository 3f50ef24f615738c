// YCSB's key distribution: Zipfian over n items with the constant 0.99 (Gray et al., "Quickly
// generating billion-record synthetic databases", as YCSB's ZipfianGenerator computes it), and
// the scrambled variant YCSB's workloads use by default, which hashes the rank (FNV-1a 64) so
// that the popular keys are spread over the key space instead of being the first ones.
// Seeded, so that every system of a benchmark sees the same sequence of keys.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace viaduct::bench {

inline constexpr double kYcsbZipfianConstant = 0.99;

class ZipfianGenerator {
 public:
  ZipfianGenerator(std::uint64_t items, std::uint64_t seed, double theta = kYcsbZipfianConstant)
      : items_(items == 0 ? 1 : items), theta_(theta), rng_(seed) {
    for (std::uint64_t i = 1; i <= items_; ++i)
      zetan_ += 1.0 / std::pow(static_cast<double>(i), theta_);
    double zeta2 = 1.0 + std::pow(0.5, theta_);
    alpha_ = 1.0 / (1.0 - theta_);
    eta_ =
        (1.0 - std::pow(2.0 / static_cast<double>(items_), 1.0 - theta_)) / (1.0 - zeta2 / zetan_);
    half_pow_theta_ = 1.0 + std::pow(0.5, theta_);
  }

  // A rank in [0, items): 0 is the most popular.
  std::uint64_t next_rank() {
    double u = uniform_(rng_);
    double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < half_pow_theta_) return 1;
    auto rank = static_cast<std::uint64_t>(static_cast<double>(items_) *
                                           std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return rank < items_ ? rank : items_ - 1;
  }

  // A key index in [0, items): the rank, scrambled.
  std::uint64_t next() { return fnv1a64(next_rank()) % items_; }

  // Uniform in [0, 1), from the same seeded stream (the read/update choice).
  double uniform() { return uniform_(rng_); }

  static std::uint64_t fnv1a64(std::uint64_t value) {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 8; ++i) {
      hash ^= value & 0xff;
      hash *= 0x100000001b3ULL;
      value >>= 8;
    }
    return hash;
  }

 private:
  std::uint64_t items_;
  double theta_;
  double zetan_ = 0;
  double alpha_ = 0;
  double eta_ = 0;
  double half_pow_theta_ = 0;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
};

}  // namespace viaduct::bench
