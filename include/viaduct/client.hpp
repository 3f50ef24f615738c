// A client of a named, replicated service, with seamless failover.
//
//   auto client = viaduct::Client::open({.name = "KV", .lookup = "10.0.0.1:7100,10.0.0.2:7100",
//                                        .service_key = key_hex});
//   auto n = (*client)->call(request, answer);   // fails over transparently
//
// The client asks the servers' lookup responders (UDP) which server is active for the name,
// connects, and checks the server's proof that it holds the service's key. When that server dies
// or hangs it finds the one that took over and re-sends what was in flight: the application sees
// no error, and each request is executed once (requests carry a client id and sequence number).
//
// Threading and ownership: a Client belongs to one thread at a time (the one calling call() or
// poll()); callbacks run inside those calls on that thread. One thread can drive several clients.
// Nothing the client returns points into it after the call ends, except the span a Reply carries,
// which is valid only during its callback.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include <viaduct/export.hpp>
#include <viaduct/status.hpp>

namespace viaduct {

struct ClientOptions {
  std::string name;    // the service name the servers were started with
  std::string lookup;  // "HOST:PORT[,HOST:PORT...]": the servers' lookup responders (UDP)
  // The service's public key, 64 hex digits (`viaduct key-public --cluster-key FILE --name
  // NAME`, or Server::service_key()): a server is used only once it proves it serves the name.
  // Empty: servers are trusted on their word (anyone who can answer a lookup can then redirect this
  // client; refused unless allow_unverified).
  std::string service_key;
  bool allow_unverified = false;
  std::uint32_t max_outstanding = 256;  // requests in flight (call_async) at most
  // Per-client failover settings; -1 keeps the process default (the VIADUCT_FAILOVER_* tunables).
  std::int64_t call_deadline_ms = -1;  // a request with no server answering for this long fails
  std::int64_t suspect_after_ms = -1;  // a server silent this long with requests pending is probed
};

// The answer to one request, given to the call_async callback.
struct Reply {
  Status status;                      // ok, or kTimeout when no server answered in time
  std::uint32_t app_status = 0;       // the service's status code (Service::handle)
  std::span<const std::byte> answer;  // valid only during the callback
};
using ReplyFn = void (*)(void* user, const Reply& reply);

// What one failover did, for the application's logs and metrics.
struct FailoverEvent {
  std::string server;        // the address now serving the name
  std::uint64_t epoch = 0;   // its epoch (grows with every takeover)
  double total_ms = 0;       // from noticing the failure to having re-sent everything
  std::uint32_t resent = 0;  // requests that were in flight and went to the new server
};

class VIADUCT_API Client {
 public:
  // Checks the options and opens the client; the first call finds the active server.
  static Result<std::unique_ptr<Client>> open(const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `request` and waits for the answer, which is copied into `answer`; returns its length.
  // `app_status`, when given, gets the service's status code.
  Result<std::size_t> call(std::span<const std::byte> request, std::span<std::byte> answer,
                           std::uint32_t* app_status = nullptr);
  // Sends `request` (copied) and returns; `fn(user, reply)` runs once, inside a later poll().
  Status call_async(std::span<const std::byte> request, ReplyFn fn, void* user);
  // Makes progress (completions, failure detection, failover); returns the replies delivered.
  std::size_t poll();

  // Called after each failover, on the polling thread; must not call back into this client.
  void on_failover(std::function<void(const FailoverEvent&)> fn);

  [[nodiscard]] std::string server() const;  // the address in use
  [[nodiscard]] std::uint64_t epoch() const;
  [[nodiscard]] std::uint64_t failovers() const;
  [[nodiscard]] std::size_t outstanding() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace viaduct
