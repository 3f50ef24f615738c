#include "tools/cache/cache_workload.hpp"

#include <random>

#include "cluster/cache/record_store.hpp"
#include "transport/clock.hpp"

namespace viaduct::tools {

namespace cc = viaduct::cluster::cache;

namespace {
std::string key_name(std::uint32_t k) {
  return "k" + std::to_string(k);
}

std::string text_of(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}
}  // namespace

CacheWorkload::CacheWorkload(cc::CacheClient& client, CacheWorkloadOptions options)
    : client_(client), options_(std::move(options)) {
  types_ = options_.types;
  if (types_.empty()) {
    for (const auto& s : client_.map().servers) {
      for (const auto& t : s.types) types_.push_back(t);
    }
  }
  acked_.assign(types_.size(), std::vector<Acked>(options_.keys_per_type));
}

void CacheWorkload::error(const Status& s, const std::string& what) {
  ++report_.errors;
  if (report_.first_error.empty()) report_.first_error = what + ": " + s.to_string();
}

void CacheWorkload::check_read(const Acked& acked, const cc::CacheRecord& got,
                               const std::string& what) {
  if (!acked.written) return;  // nothing this client acknowledged yet
  if (got.version < acked.version) {
    ++report_.stale_reads;
    if (report_.first_error.empty()) {
      report_.first_error = what + ": stale read: version " + std::to_string(got.version) +
                            " after version " + std::to_string(acked.version) + " was acknowledged";
    }
  } else if (got.version == acked.version &&
             (got.found != acked.found || (got.found && text_of(got.value) != acked.value))) {
    ++report_.wrong_values;
    if (report_.first_error.empty()) {
      report_.first_error = what + ": version " + std::to_string(got.version) +
                            " with another value than the acknowledged one";
    }
  }
}

void CacheWorkload::run(const std::atomic<bool>& stop) {
  std::mt19937_64 rng(options_.seed);
  std::uniform_int_distribution<std::uint32_t> pick_type(
      0, static_cast<std::uint32_t>(types_.size()) - 1);
  std::uniform_int_distribution<std::uint32_t> pick_key(0, options_.keys_per_type - 1);
  std::uniform_int_distribution<std::uint32_t> percent(0, 99);
  std::int64_t end = steady_now_ns() + static_cast<std::int64_t>(options_.seconds * 1e9);
  std::uint64_t counter = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    if (options_.operations != 0 ? report_.operations >= options_.operations
                                 : steady_now_ns() >= end) {
      break;
    }
    std::uint32_t t = pick_type(rng);
    std::uint32_t k = pick_key(rng);
    Acked& acked = acked_[t][k];
    std::string key = key_name(k);
    std::string what = types_[t] + "/" + key;
    bool write = percent(rng) < options_.write_percent;
    std::int64_t start = steady_now_ns();
    if (write) {
      ++report_.writes;
      if (percent(rng) < options_.delete_percent) {
        auto r = client_.remove(types_[t], cc::as_bytes(key));
        if (r) {
          acked = {true, false, r.value(), ""};
        } else {
          error(r.status(), "del " + what);
        }
      } else {
        std::string value = what + "#" + std::to_string(++counter);
        if (value.size() < options_.value_bytes) value.resize(options_.value_bytes, '.');
        auto r = client_.put(types_[t], cc::as_bytes(key), cc::as_bytes(value));
        if (r) {
          acked = {true, true, r.value(), value};
        } else {
          error(r.status(), "put " + what);
        }
      }
    } else {
      ++report_.reads;
      auto r = client_.get(types_[t], cc::as_bytes(key));
      if (r) {
        check_read(acked, r.value(), "get " + what);
      } else {
        error(r.status(), "get " + what);
      }
    }
    std::int64_t now = steady_now_ns();
    ++report_.operations;
    report_.latency.record(now - start);
    report_.max_latency_ns = std::max(report_.max_latency_ns, now - start);
    if (options_.on_operation) options_.on_operation({now, now - start, write, types_[t], k});
  }
}

void CacheWorkload::verify(const std::string& database) {
  std::unique_ptr<cc::RecordStore> store;
  if (!database.empty()) {
    auto opened = cc::open_record_store(database);
    if (opened) {
      store = std::move(opened.value());
    } else {
      error(opened.status(), "open the database to verify");
    }
  }
  cc::StoredRecord stored;
  for (std::size_t t = 0; t < types_.size(); ++t) {
    for (std::uint32_t k = 0; k < options_.keys_per_type; ++k) {
      const Acked& acked = acked_[t][k];
      if (!acked.written) continue;
      std::string key = key_name(k);
      auto got = client_.get(types_[t], cc::as_bytes(key));
      bool same = got && got->version == acked.version && got->found == acked.found &&
                  (!acked.found || text_of(got->value) == acked.value);
      if (!same) {
        ++report_.lost_writes;
        if (report_.first_error.empty()) {
          report_.first_error = "final read of " + types_[t] + "/" + key +
                                ": not the last "
                                "acknowledged write (version " +
                                std::to_string(acked.version) + ")";
        }
      }
      if (store) {
        auto s = store->get(types_[t], cc::as_bytes(key), stored);
        bool in_db = s.is_ok() && stored.version == acked.version && stored.found == acked.found &&
                     (!acked.found || text_of(stored.value) == acked.value);
        if (!in_db) ++report_.lost_in_database;
      }
    }
  }
}

}  // namespace viaduct::tools
