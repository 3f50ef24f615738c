// Connects a Channel on a helper thread, so that the session's thread never waits for a connect.
//
// Domain::connect blocks until the peer accepts, refuses or the timeout passes (rdma_cm and
// libfabric's connection manager both hand back the result as an event to wait for), and during a
// failover the peer is often a moment from taking over, or dead. The session asks this connector
// instead and keeps polling: its other requests, and the application's other sessions, go on.
//
// Each connect runs in a Domain of its own, handed over with the channel: a Domain is not shared
// between threads. After a handover the helper opens a spare Domain for the next connect while it
// is idle, so that the next failover does not pay for opening one.
//
// One connect at a time. start() abandons a connect still running: its result, when it comes, is
// dropped on the helper thread. The helper thread starts on the first start().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "transport/channel.hpp"

namespace viaduct::failover {

// A finished connect: the channel with the Domain it lives in (declared first: destroyed last), or
// why there is none.
struct ConnectOutcome {
  std::unique_ptr<transport::Domain> domain;
  std::unique_ptr<transport::Channel> channel;
  Status status;
  double connect_ms = 0;  // the connect itself, on the helper thread
};

class BackgroundConnector {
 public:
  BackgroundConnector() = default;
  // Waits for a connect in progress (at most its timeout).
  ~BackgroundConnector();
  BackgroundConnector(const BackgroundConnector&) = delete;
  BackgroundConnector& operator=(const BackgroundConnector&) = delete;

  // Connects to `address`, sending `hello_app` in the channel hello. Never blocks for the connect.
  void start(const transport::Address& address, std::span<const std::byte> hello_app,
             int timeout_ms);
  // The result of the latest start() once it is in (once); nullopt while it runs.
  std::optional<ConnectOutcome> take();
  // Blocks until the latest start()'s result is in or `timeout_ns` passes, for a caller with
  // nothing else to do (Session::call): the helper then has the CPU to itself.
  void wait(std::int64_t timeout_ns);
  // Abandons the latest start(): its result is dropped.
  void cancel();
  // Closes a Domain (with no channel left in it) on the helper thread.
  void retire(std::unique_ptr<transport::Domain> domain);

 private:
  struct Job {
    transport::Address address;
    std::vector<std::byte> hello_app;
    int timeout_ms = 0;
    std::uint64_t ticket = 0;
  };
  void run();
  ConnectOutcome connect(const Job& job);

  std::mutex mutex_;
  std::condition_variable wake_;      // session → helper: a job, a Domain to close, or stop
  std::condition_variable finished_;  // helper → session: a result is in
  std::optional<Job> next_;           // session → helper
  std::vector<std::unique_ptr<transport::Domain>> retired_;  // session → helper, to close
  std::optional<ConnectOutcome> result_;  // helper → session, for ticket `result_ticket_`
  std::uint64_t result_ticket_ = 0;
  std::uint64_t tickets_issued_ = 0;
  std::uint64_t latest_ticket_ = 0;  // the start() whose result is wanted; 0: none
  bool stop_ = false;
  std::unique_ptr<transport::Domain> spare_domain_;  // the helper's alone
  std::thread thread_;
};

}  // namespace viaduct::failover
