#include "transport/verbs/verbs_listener.hpp"

#include <arpa/inet.h>

#include <cerrno>

#include "transport/tunables.hpp"
#include "transport/verbs/verbs_cm.hpp"
#include "transport/verbs/verbs_endpoint.hpp"

namespace viaduct::transport::verbs {

namespace {

// Requests keep the listener's channel alive: their ids hang on it until accept migrates them.
using SharedChannel = std::shared_ptr<rdma_event_channel>;

class VerbsConnectionRequest final : public ConnectionRequest {
 public:
  VerbsConnectionRequest(std::shared_ptr<DomainCore> core, SharedChannel channel, CmIdPtr id,
                         std::vector<std::byte> private_data)
      : core_(std::move(core)),
        channel_(std::move(channel)),
        id_(std::move(id)),
        private_data_(std::move(private_data)) {}
  ~VerbsConnectionRequest() override {
    // Neither accepted nor rejected: say no rather than leave the peer waiting for its timeout.
    if (id_) rdma_reject(id_.get(), nullptr, 0);
  }

  [[nodiscard]] std::span<const std::byte> private_data() const override { return private_data_; }

  Result<std::unique_ptr<VirtualInterface>> accept(std::span<const std::byte> reply,
                                                   const ViOptions& options,
                                                   int timeout_ms) override {
    if (!id_) return Status(Code::kInvalidArgument, "request already answered");
    if (reply.size() > kMaxPrivateData) {
      return Status(Code::kInvalidArgument, "accept private data larger than kMaxPrivateData");
    }
    Deadline deadline(timeout_ms > 0 ? timeout_ms
                                     : static_cast<int>(tunables::connect_timeout_ms.get()));
    auto channel = make_event_channel();
    if (!channel) return channel.status();
    // Its own channel gives the VI its own DISCONNECTED events.
    if (rdma_migrate_id(id_.get(), channel->get()) != 0) {
      return Status(Code::kInternal, errno_text("rdma_migrate_id"));
    }
    // From here on the VI owns the id (it now hangs on the VI's channel).
    auto vi = VerbsVi::create(core_, std::move(channel.value()), std::move(id_), options);
    if (!vi) return vi.status();
    VIADUCT_RETURN_IF_ERROR(set_ack_timeout((*vi)->cm_id()));
    (*vi)->set_peer_private_data(std::move(private_data_));
    if (options.before_connect) VIADUCT_RETURN_IF_ERROR(options.before_connect(**vi));
    std::vector<std::byte> framed = frame_private_data(reply);
    rdma_conn_param param = connection_parameters(*core_, framed);
    if (rdma_accept((*vi)->cm_id(), &param) != 0) {
      return Status(Code::kInternal, errno_text("rdma_accept"));
    }
    VIADUCT_RETURN_IF_ERROR((*vi)->wait_established(deadline, false, nullptr));
    return std::unique_ptr<VirtualInterface>(std::move(vi.value()));
  }

  Status reject(std::span<const std::byte> reason) override {
    if (!id_) return Status(Code::kInvalidArgument, "request already answered");
    if (reason.size() > kMaxPrivateData) {
      return Status(Code::kInvalidArgument, "reject private data larger than kMaxPrivateData");
    }
    std::vector<std::byte> framed = frame_private_data(reason);
    int rc = rdma_reject(id_.get(), framed.data(), static_cast<std::uint8_t>(framed.size()));
    id_.reset();
    if (rc != 0) return Status(Code::kInternal, errno_text("rdma_reject"));
    return Status::ok();
  }

 private:
  std::shared_ptr<DomainCore> core_;
  SharedChannel channel_;
  CmIdPtr id_;
  std::vector<std::byte> private_data_;
};

class VerbsListener final : public Listener {
 public:
  VerbsListener(std::shared_ptr<DomainCore> core, SharedChannel channel, CmIdPtr id,
                Address address)
      : core_(std::move(core)),
        channel_(std::move(channel)),
        id_(std::move(id)),
        address_(std::move(address)) {}

  [[nodiscard]] const Address& address() const override { return address_; }
  [[nodiscard]] int wait_fd() const override { return channel_->fd; }

  Result<std::unique_ptr<ConnectionRequest>> get_request(int timeout_ms) override {
    Deadline deadline(timeout_ms);
    for (;;) {
      CmEvent event;
      Status s = wait_cm_event(channel_.get(), deadline, &event);
      if (s.code() == Code::kTimeout) return Status(Code::kTimeout, "no connection request");
      if (!s) return s;
      if (event.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
        // Zero-padded by IB CM to kMaxPrivateData; the caller's encoding carries its length.
        return std::unique_ptr<ConnectionRequest>(std::make_unique<VerbsConnectionRequest>(
            core_, channel_, CmIdPtr(event.id), std::move(event.private_data)));
      }
      if (event.type == RDMA_CM_EVENT_DEVICE_REMOVAL && event.id == id_.get()) {
        return Status(Code::kNoDevice, "RDMA device removed under the listener");
      }
      // Other events belong to requests not yet accepted (e.g. the peer gave up): nothing to do.
    }
  }

 private:
  std::shared_ptr<DomainCore> core_;
  SharedChannel channel_;
  CmIdPtr id_;
  Address address_;
};

}  // namespace

Result<std::unique_ptr<Listener>> make_listener(std::shared_ptr<DomainCore> core,
                                                const Address& local) {
  auto bind_address = resolve_host(local, true);
  if (!bind_address) return bind_address.status();
  auto channel = make_event_channel();
  if (!channel) return channel.status();
  SharedChannel shared(channel->release(), EventChannelDeleter{});
  auto id = make_cm_id(shared.get());
  if (!id) return id.status();
  if (rdma_bind_addr(id->get(), bind_address->get()) != 0) {
    return Status(errno == EADDRINUSE ? Code::kResource : Code::kInvalidArgument,
                  errno_text(("rdma_bind_addr(" + local.to_string() + ")").c_str()));
  }
  // A wildcard bind has no device yet; accept checks each request's device instead.
  if (id->get()->verbs != nullptr && id->get()->verbs != core->context) {
    return Status(Code::kInvalidArgument,
                  local.to_string() + " is on a different RDMA device than the domain's");
  }
  constexpr int kBacklog = 128;
  if (rdma_listen(id->get(), kBacklog) != 0) {
    return Status(Code::kInternal, errno_text("rdma_listen"));
  }
  Address bound = local;
  bound.port = ntohs(rdma_get_src_port(id->get()));
  return std::unique_ptr<Listener>(std::make_unique<VerbsListener>(
      std::move(core), std::move(shared), std::move(id.value()), std::move(bound)));
}

}  // namespace viaduct::transport::verbs
