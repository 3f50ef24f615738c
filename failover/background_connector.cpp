#include "failover/background_connector.hpp"

#include <chrono>

#include "transport/clock.hpp"

namespace viaduct::failover {

BackgroundConnector::~BackgroundConnector() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackgroundConnector::start(const transport::Address& address,
                                std::span<const std::byte> hello_app, int timeout_ms) {
  {
    std::lock_guard lock(mutex_);
    latest_ticket_ = ++tickets_issued_;
    next_ = Job{address, {hello_app.begin(), hello_app.end()}, timeout_ms, latest_ticket_};
    result_.reset();  // an earlier connect's result is no longer wanted
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  wake_.notify_all();
}

std::optional<ConnectOutcome> BackgroundConnector::take() {
  std::lock_guard lock(mutex_);
  if (!result_ || result_ticket_ != latest_ticket_) return std::nullopt;
  std::optional<ConnectOutcome> out = std::move(result_);
  result_.reset();
  latest_ticket_ = 0;  // taken: nothing more is wanted until the next start()
  return out;
}

void BackgroundConnector::wait(std::int64_t timeout_ns) {
  std::unique_lock lock(mutex_);
  finished_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), [&] {
    return latest_ticket_ == 0 || (result_ && result_ticket_ == latest_ticket_);
  });
}

void BackgroundConnector::cancel() {
  std::lock_guard lock(mutex_);
  next_.reset();
  result_.reset();
  latest_ticket_ = 0;
}

void BackgroundConnector::retire(std::unique_ptr<transport::Domain> domain) {
  if (!domain) return;
  {
    std::lock_guard lock(mutex_);
    retired_.push_back(std::move(domain));
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  wake_.notify_all();
}

ConnectOutcome BackgroundConnector::connect(const Job& job) {
  ConnectOutcome out;
  std::int64_t t0 = steady_now_ns();
  if (!spare_domain_ || spare_domain_->backend() != job.address.backend) {
    spare_domain_.reset();
    auto d = transport::Domain::open(job.address);
    if (!d) {
      out.status = d.status();
      return out;
    }
    spare_domain_ = std::move(d.value());
  }
  transport::ChannelOptions options;
  options.hello_app = job.hello_app;
  auto channel = transport::Channel::connect(*spare_domain_, job.address, options, job.timeout_ms);
  out.connect_ms = static_cast<double>(steady_now_ns() - t0) / 1e6;
  if (!channel) {
    out.status = channel.status();  // the Domain stays, for the next try
    return out;
  }
  out.domain = std::move(spare_domain_);
  out.channel = std::move(channel.value());
  return out;
}

void BackgroundConnector::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || next_.has_value() || !retired_.empty(); });
    if (stop_) return;
    if (!retired_.empty()) {
      std::vector<std::unique_ptr<transport::Domain>> closing;
      closing.swap(retired_);
      lock.unlock();
      closing.clear();
      lock.lock();
      continue;
    }
    Job job = std::move(*next_);
    next_.reset();
    lock.unlock();
    ConnectOutcome outcome = connect(job);
    lock.lock();
    bool wanted = !stop_ && job.ticket == latest_ticket_;
    if (wanted) {
      result_.reset();
      result_.emplace(std::move(outcome));
      result_ticket_ = job.ticket;
    }
    bool idle = !stop_ && !next_;
    lock.unlock();
    if (wanted) finished_.notify_all();
    // Outside the lock, so that the session's take() never waits for it: an abandoned channel is
    // closed here (its Domain kept for the next connect), and after a handover the next connect's
    // Domain is opened while there is nothing else to do.
    if (!wanted && outcome.channel) {
      outcome.channel.reset();
      spare_domain_ = std::move(outcome.domain);
    }
    if (wanted && idle && !spare_domain_) {
      auto d = transport::Domain::open(job.address);
      if (d) spare_domain_ = std::move(d.value());
    }
    lock.lock();
  }
}

}  // namespace viaduct::failover
