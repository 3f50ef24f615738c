// The application's side of a replicated service: what viaduct::Server (<viaduct/server.hpp>)
// calls for each request, and how the passive partner keeps the same state.
//
// Threading: every method runs on the server's serving thread (the one calling Server::run), one
// at a time, so a service needs no locks of its own. handle() must not block long: the partner's
// keep-alives and every other client wait behind it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <viaduct/export.hpp>

namespace viaduct {

class VIADUCT_API Service {
 public:
  virtual ~Service() = default;

  // Executes one request: fills `response` (empty on entry; its capacity is reused from request
  // to request, so a warm server allocates nothing) and returns the application's status code,
  // which the client receives with the answer (0 is success by convention).
  virtual std::uint32_t handle(std::span<const std::byte> request,
                               std::vector<std::byte>& response) = 0;

  // Replication, so that a request is executed once even across a crash of the active. The
  // active sends every request it executed, with its answer, to the passive partner and answers
  // the client only once the passive has applied it. The passive calls apply_replica (not
  // handle: the request was executed already; this brings the passive's state up to date with
  // its effect) and keeps the answer in its reply cache. A passive that (re)connects first gets
  // the whole state: snapshot() on the active, restore() on the passive.
  // Defaults: a service without state.
  virtual void apply_replica(std::span<const std::byte> /*request*/,
                             std::span<const std::byte> /*response*/) {}
  virtual void snapshot(std::vector<std::byte>& state) { state.clear(); }
  virtual void restore(std::span<const std::byte> /*state*/) {}
};

}  // namespace viaduct
