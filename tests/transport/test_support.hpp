// Helpers for transport tests: an in-process server thread, and a real server process.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
  // The server's domain, for its staging-budget counters (read from the test thread: atomics).
  [[nodiscard]] transport::Domain& domain() { return *domain_; }
  std::atomic<std::uint64_t> closed_channels{0};
  // Why the last channel was dropped.
  [[nodiscard]] Status last_close_reason() const;

 private:
  std::unique_ptr<transport::Domain> domain_;
  std::unique_ptr<transport::ChannelServer> server_;
  transport::Address address_;
  Status status_;
  mutable std::mutex close_mutex_;
  Status last_close_reason_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A hand-driven channel peer for hostile-peer tests: it says a proper hello, posts receives (so
// the channel under test never hits RNR on the strict fake), then sends whatever frames the test
// forges, from registered memory that a rendezvous reference may point into.
class RawPeer {
 public:
  // Connects to a channel server at `server` with a hello of `recv_slots` receives and
  // `eager_threshold`.
  static std::unique_ptr<RawPeer> connect(transport::Domain& domain,
                                          const transport::Address& server,
                                          std::uint16_t recv_slots = 8,
                                          std::uint32_t eager_threshold = 16384,
                                          std::size_t exposed_bytes = 1 << 20);
  // Accepts one connection on `listener` (run it on a thread while the other side connects).
  static std::unique_ptr<RawPeer> accept(transport::Domain& domain, transport::Listener& listener,
                                         std::uint16_t recv_slots, std::uint32_t eager_threshold);
  // Sends a forged frame (header + body as given) from the registered send buffer.
  Status send(std::span<const std::byte> frame);
  // A frame header with payload_len = body bytes, encoded with `body` appended.
  static std::vector<std::byte> frame(transport::FrameHeader h, std::span<const std::byte> body);
  // Registered memory the peer's RDMA reads may target (anonymous mmap: untouched pages cost
  // nothing, so a test may expose more than it fills).
  [[nodiscard]] std::byte* exposed() { return exposed_; }
  [[nodiscard]] transport::RemoteSegment exposed_segment() const {
    return exposed_mr_->remote(exposed_);
  }
  // A rendezvous frame announcing `length` bytes at the start of the exposed memory.
  [[nodiscard]] std::vector<std::byte> rendezvous_frame(transport::FrameType type,
                                                        std::uint64_t request_id,
                                                        std::uint64_t length) const;
  ~RawPeer();
  // Polls until the connection is down or timeout_ms passes; true if it went down.
  bool wait_down(int timeout_ms);
  [[nodiscard]] transport::VirtualInterface& vi() { return *vi_; }

 private:
  RawPeer() = default;
  Status prepare(transport::Domain& domain, std::uint16_t recv_slots, std::size_t exposed_bytes);
  std::vector<std::byte> recv_buf_;
  std::vector<std::byte> send_buf_;
  std::byte* exposed_ = nullptr;
  std::size_t exposed_bytes_ = 0;
  std::unique_ptr<transport::MemoryRegion> recv_mr_;
  std::unique_ptr<transport::MemoryRegion> send_mr_;
  std::unique_ptr<transport::MemoryRegion> exposed_mr_;
  std::uint16_t recv_slots_ = 0;
  std::size_t slot_bytes_ = 0;
  std::unique_ptr<transport::VirtualInterface> vi_;  // after the memory it uses
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
