// viaduct::Client (<viaduct/client.hpp>): the public face of failover::Session. Options are
// checked and parsed here, so an application gets an error naming what is wrong before anything
// goes on the network.
#include <viaduct/client.hpp>

#include <utility>
#include <vector>

#include "failover/server_proof.hpp"
#include "failover/session.hpp"
#include "failover/udp_socket.hpp"
#include "transport/tunable.hpp"

namespace viaduct {

// Hidden: an exported class's nested types are exported with it otherwise.
struct [[gnu::visibility("hidden")]] Client::Impl {
  // One slot per request the session may have in flight, so that the application's (fn, user)
  // pair travels through the session's single user pointer without an allocation per call.
  struct AsyncCall {
    Impl* impl = nullptr;
    std::uint32_t index = 0;
    ReplyFn fn = nullptr;
    void* user = nullptr;
  };
  static void on_response(void* slot, const transport::Response& response);

  std::unique_ptr<failover::Session> session;
  std::vector<AsyncCall> calls;
  std::vector<std::uint32_t> free_calls;
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::open(const ClientOptions& options) {
  VIADUCT_RETURN_IF_ERROR(Tunable::check_environment_for_library());
  failover::SessionOptions so;
  so.name = options.name;
  auto lookup = failover::parse_endpoint_list(options.lookup);
  if (!lookup) return Status(Code::kInvalidArgument, "lookup: " + lookup.status().message());
  so.lookup = std::move(lookup.value());
  if (!options.service_key.empty()) {
    auto key = failover::parse_public_key(options.service_key);
    if (!key) return Status(Code::kInvalidArgument, "service_key: " + key.status().message());
    so.server_key = key.value();
  } else if (!options.allow_unverified) {
    return Status(Code::kInvalidArgument,
                  "service_key is empty: give the service's public key (`viaduct key-public "
                  "--name NAME`), or set allow_unverified to trust servers on their word");
  }
  if (options.max_outstanding == 0) {
    return Status(Code::kInvalidArgument, "max_outstanding must be at least 1");
  }
  so.max_outstanding = options.max_outstanding;
  so.tuning.call_deadline_ms = options.call_deadline_ms;
  so.tuning.suspect_after_ms = options.suspect_after_ms;
  auto session = failover::Session::open(std::move(so));
  if (!session) return session.status();
  auto impl = std::make_unique<Impl>();
  impl->session = std::move(session.value());
  impl->calls.resize(options.max_outstanding);
  for (std::uint32_t i = options.max_outstanding; i > 0; --i) {
    impl->calls[i - 1] = {impl.get(), i - 1, nullptr, nullptr};
    impl->free_calls.push_back(i - 1);
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));  // private constructor
}

Result<std::size_t> Client::call(std::span<const std::byte> request, std::span<std::byte> answer,
                                 std::uint32_t* app_status) {
  return impl_->session->call(request, answer, app_status);
}

Status Client::call_async(std::span<const std::byte> request, ReplyFn fn, void* user) {
  if (impl_->free_calls.empty()) {
    return Status(Code::kResource, "max_outstanding requests already in flight");
  }
  std::uint32_t index = impl_->free_calls.back();
  Impl::AsyncCall& call = impl_->calls[index];
  call.fn = fn;
  call.user = user;
  Status st = impl_->session->call_async(request, &Impl::on_response, &call);
  if (st) impl_->free_calls.pop_back();
  return st;
}

void Client::Impl::on_response(void* slot, const transport::Response& response) {
  auto& call = *static_cast<AsyncCall*>(slot);
  ReplyFn fn = call.fn;
  void* user = call.user;
  // The slot is free again before the application runs: its callback may issue the next call.
  call.impl->free_calls.push_back(call.index);
  fn(user, Reply{response.status, response.app_status, response.payload});
}

std::size_t Client::poll() {
  return impl_->session->poll();
}

void Client::on_failover(std::function<void(const FailoverEvent&)> fn) {
  if (!fn) {
    impl_->session->on_failover = nullptr;
    return;
  }
  impl_->session->on_failover = [fn = std::move(fn)](const failover::FailoverTimings& timings,
                                                     const std::string& server,
                                                     std::uint64_t epoch) {
    fn(FailoverEvent{server, epoch, timings.total_ms, timings.replayed});
  };
}

std::string Client::server() const {
  return impl_->session->server();
}
std::uint64_t Client::epoch() const {
  return impl_->session->epoch();
}
std::uint64_t Client::failovers() const {
  return impl_->session->failovers();
}
std::size_t Client::outstanding() const {
  return impl_->session->outstanding();
}

}  // namespace viaduct
