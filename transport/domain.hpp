// A domain opens one NIC (VIA's "open NIC" + protection tag): it registers memory and creates
// virtual interfaces by connecting or by accepting on a listener. Back ends implement this tiny
// interface (ofi/, verbs/, fake/), the way eRPC keeps its transports behind one small class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "transport/address.hpp"
#include "transport/memory_region.hpp"
#include "transport/staging_budget.hpp"
#include "transport/status.hpp"
#include "transport/virtual_interface.hpp"

namespace viaduct::transport {

// Largest private payload carried by connect / accept / reject. rdma_cm allows 56 bytes on an RC
// connect request (IB CM REQ), so everything above must fit there.
inline constexpr std::size_t kMaxPrivateData = 56;

struct ViOptions {
  std::uint32_t send_queue_depth = 0;  // 0: tunable vi_send_queue_depth
  std::uint32_t recv_queue_depth = 0;  // 0: tunable vi_recv_queue_depth
  // A VI that is only ever busy-polled can skip the CQ's wait object: libfabric's util CQ
  // signals that fd on every completion, a syscall per message. With busy_poll, cq().wait()
  // returns at once and cq().arm() is always false (callers spin).
  bool busy_poll = false;
  // Runs after the VI exists and before the connection completes: post receives here so the
  // peer's first send finds one (no RNR, no drop).
  std::function<Status(VirtualInterface&)> before_connect;

  // The depths in force: the option, or the tunable when 0.
  [[nodiscard]] std::uint32_t resolved_send_depth() const;
  [[nodiscard]] std::uint32_t resolved_recv_depth() const;
};

class ConnectionRequest {
 public:
  virtual ~ConnectionRequest() = default;
  [[nodiscard]] virtual std::span<const std::byte> private_data() const = 0;
  // Accept: the VI is connected on return, or the error says why (kTimeout, kConnLost).
  virtual Result<std::unique_ptr<VirtualInterface>> accept(std::span<const std::byte> reply,
                                                           const ViOptions& options,
                                                           int timeout_ms) = 0;
  // The connecting side sees kRejected with `reason` as the peer's private data.
  virtual Status reject(std::span<const std::byte> reason) = 0;
  // Accept without waiting for the connection to complete: the VI comes back kConnecting (or
  // already kConnected) and VirtualInterface::progress_connect() finishes it. A server's loop
  // uses this so that a peer which never completes its handshake cannot stall it. Back ends whose
  // accept cannot be split (verbs, fake) accept synchronously within connect_timeout_ms.
  virtual Result<std::unique_ptr<VirtualInterface>> start_accept(std::span<const std::byte> reply,
                                                                 const ViOptions& options);
};

class Listener {
 public:
  virtual ~Listener() = default;
  // The address actually bound (port filled in when 0 was asked).
  [[nodiscard]] virtual const Address& address() const = 0;
  // Wait up to timeout_ms for the next connection request (kTimeout if none).
  virtual Result<std::unique_ptr<ConnectionRequest>> get_request(int timeout_ms) = 0;
  // Readable when get_request would not block; for a server's event loop.
  [[nodiscard]] virtual int wait_fd() const = 0;
  // Call before blocking on wait_fd(): false if an event is already waiting (do not block).
  // Some providers' fds stay readable until re-armed (libfabric: fi_trywait).
  virtual bool arm() { return true; }
};

// A failed connect carries the rejecting peer's private data here (kRejected).
struct ConnectError {
  Status status;
  std::vector<std::byte> reject_data;
};

class Domain {
 public:
  virtual ~Domain() = default;
  // Open the NIC that reaches `address` (a local address to listen on, or a peer to connect to).
  static Result<std::unique_ptr<Domain>> open(const Address& address);

  [[nodiscard]] virtual BackendKind backend() const = 0;
  virtual Result<std::unique_ptr<MemoryRegion>> register_memory(void* data, std::size_t size,
                                                                Access access) = 0;
  virtual Result<std::unique_ptr<Listener>> listen(const Address& local) = 0;
  // Connect; `private_data` travels in the request (at most kMaxPrivateData bytes). On kRejected
  // the peer's reason is in *reject_data when given.
  virtual Result<std::unique_ptr<VirtualInterface>> connect(
      const Address& remote, std::span<const std::byte> private_data, const ViOptions& options,
      int timeout_ms, std::vector<std::byte>* reject_data) = 0;

  // Rendezvous staging registered by this domain's channels, one budget per direction
  // (domain_max_staging_bytes each): what peers read from us, and what we read from peers.
  StagingBudget& outgoing_staging() { return outgoing_staging_; }
  StagingBudget& incoming_staging() { return incoming_staging_; }

 protected:
  Domain();

 private:
  StagingBudget outgoing_staging_;
  StagingBudget incoming_staging_;
};

// What `viaduct info` shows: each back end, whether it is usable here, and the devices it sees.
struct BackendReport {
  BackendKind backend;
  bool usable = false;
  std::string detail;                // why not usable, or provider/version
  std::vector<std::string> devices;  // NICs / domains
};
std::vector<BackendReport> probe_backends();

}  // namespace viaduct::transport
