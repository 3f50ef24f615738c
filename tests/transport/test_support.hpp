// Helpers for transport tests: an in-process server thread, and a real server process.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "tools/perf/perf.hpp"
#include "transport/channel_server.hpp"

namespace viaduct::testing {

// Runs a ChannelServer with `handler` on its own thread (the server's thread owns its channels).
class ServerThread {
 public:
  ServerThread(const std::string& uri, transport::RequestHandler* handler,
               transport::ChannelServerOptions options = {});
  ~ServerThread();
  [[nodiscard]] const transport::Address& address() const { return address_; }
  [[nodiscard]] bool ok() const { return status_.is_ok(); }
  [[nodiscard]] const Status& status() const { return status_; }
  std::atomic<std::uint64_t> closed_channels{0};

 private:
  std::unique_ptr<transport::Domain> domain_;
  std::unique_ptr<transport::ChannelServer> server_;
  transport::Address address_;
  Status status_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// `viaduct perf server` as a real child process; killed in the destructor.
class ServerProcess {
 public:
  explicit ServerProcess(const std::string& listen_uri);
  ~ServerProcess();
  [[nodiscard]] const std::string& uri() const { return uri_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  void kill_hard();  // SIGKILL and reap
  void freeze();     // SIGSTOP: the process holds its connections but answers nothing

 private:
  pid_t pid_ = -1;
  std::string uri_;
};

// A request handler that checks nothing and answers with the request's bytes reversed, so a test
// can verify content end to end.
class ReverseHandler final : public transport::RequestHandler {
 public:
  void on_request(transport::Channel& channel, const transport::IncomingRequest& r) override;
  std::atomic<std::uint64_t> served{0};
  int delay_us = 0;  // a slow receiver

 private:
  std::vector<std::byte> buffer_;
};

}  // namespace viaduct::testing
