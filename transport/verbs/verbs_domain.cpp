#include "transport/verbs/verbs_domain.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "transport/tunables.hpp"
#include "transport/verbs/verbs_cm.hpp"
#include "transport/verbs/verbs_domain_core.hpp"
#include "transport/verbs/verbs_endpoint.hpp"
#include "transport/verbs/verbs_listener.hpp"

namespace viaduct::transport::verbs {

rdma_conn_param connection_parameters(const DomainCore& core, std::span<const std::byte> data) {
  rdma_conn_param param{};
  param.private_data = data.empty() ? nullptr : data.data();
  param.private_data_len = static_cast<std::uint8_t>(data.size());
  param.responder_resources = core.responder_resources;
  param.initiator_depth = core.initiator_depth;
  // Both capped at 6 by their tunables: rxe takes 7 as "retry forever".
  param.retry_count = static_cast<std::uint8_t>(tunables::verbs_retry_count.get());
  param.rnr_retry_count = static_cast<std::uint8_t>(tunables::verbs_rnr_retry_count.get());
  return param;
}

namespace {

class VerbsMemoryRegion final : public MemoryRegion {
 public:
  VerbsMemoryRegion(std::shared_ptr<DomainCore> core, MrPtr mr, std::byte* data, std::size_t size)
      : MemoryRegion(data, size), core_(std::move(core)), mr_(std::move(mr)) {
    local_desc_ = mr_.get();
    lkey_ = mr_->lkey;
    remote_key_ = mr_->rkey;
    virtual_addressing_ = true;
  }

 private:
  // The PD must outlive the registration: core_ is declared first so it is released last.
  std::shared_ptr<DomainCore> core_;
  MrPtr mr_;
};

class VerbsDomain final : public Domain {
 public:
  explicit VerbsDomain(std::shared_ptr<DomainCore> core) : core_(std::move(core)) {}

  [[nodiscard]] BackendKind backend() const override { return BackendKind::kVerbs; }

  Result<std::unique_ptr<MemoryRegion>> register_memory(void* data, std::size_t size,
                                                        Access access) override {
    if (data == nullptr || size == 0) {
      return Status(Code::kInvalidArgument, "cannot register an empty region");
    }
    int flags = IBV_ACCESS_LOCAL_WRITE;
    if (has(access, Access::kRemoteRead)) flags |= IBV_ACCESS_REMOTE_READ;
    if (has(access, Access::kRemoteWrite)) flags |= IBV_ACCESS_REMOTE_WRITE;
    MrPtr mr(ibv_reg_mr(core_->pd.get(), data, size, flags));
    if (!mr) return Status(Code::kResource, errno_text("ibv_reg_mr"));
    return std::unique_ptr<MemoryRegion>(std::make_unique<VerbsMemoryRegion>(
        core_, std::move(mr), static_cast<std::byte*>(data), size));
  }

  Result<std::unique_ptr<Listener>> listen(const Address& local) override {
    return make_listener(core_, local);
  }

  Result<std::unique_ptr<VirtualInterface>> connect(const Address& remote,
                                                    std::span<const std::byte> private_data,
                                                    const ViOptions& options, int timeout_ms,
                                                    std::vector<std::byte>* reject_data) override {
    if (private_data.size() > kMaxPrivateData) {
      return Status(Code::kInvalidArgument, "connect private data larger than kMaxPrivateData");
    }
    Deadline deadline(timeout_ms > 0 ? timeout_ms
                                     : static_cast<int>(tunables::connect_timeout_ms.get()));
    auto destination = resolve_host(remote, false);
    if (!destination) return destination.status();
    auto channel = make_event_channel();
    if (!channel) return channel.status();
    auto id = make_cm_id(channel->get());
    if (!id) return id.status();
    // The VI owns channel and id from here, so every early return below unwinds them in order.
    rdma_event_channel* channel_raw = channel->get();
    rdma_cm_id* id_raw = id->get();

    if (rdma_resolve_addr(id_raw, nullptr, destination->get(), deadline.remaining_ms()) != 0) {
      return Status(Code::kInternal, errno_text("rdma_resolve_addr"));
    }
    VIADUCT_RETURN_IF_ERROR(
        expect_cm_event(channel_raw, deadline, RDMA_CM_EVENT_ADDR_RESOLVED, "address resolution"));
    VIADUCT_RETURN_IF_ERROR(set_ack_timeout(id_raw));
    if (rdma_resolve_route(id_raw, std::max(deadline.remaining_ms(), 1)) != 0) {
      return Status(Code::kInternal, errno_text("rdma_resolve_route"));
    }
    VIADUCT_RETURN_IF_ERROR(
        expect_cm_event(channel_raw, deadline, RDMA_CM_EVENT_ROUTE_RESOLVED, "route resolution"));

    auto vi = VerbsVi::create(core_, std::move(channel.value()), std::move(id.value()), options);
    if (!vi) return vi.status();
    if (options.before_connect) VIADUCT_RETURN_IF_ERROR(options.before_connect(**vi));
    rdma_conn_param param = connection_parameters(*core_, private_data);
    if (rdma_connect(id_raw, &param) != 0) {
      return Status(Code::kInternal, errno_text("rdma_connect"));
    }
    VIADUCT_RETURN_IF_ERROR((*vi)->wait_established(deadline, true, reject_data));
    return std::unique_ptr<VirtualInterface>(std::move(vi.value()));
  }

 private:
  std::shared_ptr<DomainCore> core_;
};

Status no_device_status() {
  int count = 0;
  DeviceListPtr list(ibv_get_device_list(&count));
  if (!list) {
    return Status(Code::kNoDevice, "no RDMA device: " + errno_text("ibv_get_device_list"));
  }
  if (count == 0) return Status(Code::kNoDevice, "no RDMA device: ibv_get_device_list is empty");
  return Status::ok();
}

// Finds the device that reaches `address`: a local address binds to its own device, a remote
// one is resolved through the routing table.
Status attach_device(DomainCore& core, const Address& address) {
  constexpr int kResolveTimeoutMs = 2000;
  auto target = resolve_host(address, true);
  if (!target) return target.status();
  rdma_cm_id* id = core.anchor_id.get();
  SocketAddress bind_address = *target;
  // Port 0: the anchor only pins the device; the listener binds the real port.
  if (bind_address.storage.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&bind_address.storage)->sin_port = 0;
  } else if (bind_address.storage.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&bind_address.storage)->sin6_port = 0;
  }
  if (rdma_bind_addr(id, bind_address.get()) == 0 && id->verbs != nullptr) {
    core.context = id->verbs;
    return Status::ok();
  }
  const bool wildcard = address.host.empty() || address.host == "*" || address.host == "0.0.0.0" ||
                        address.host == "[::]";
  if (wildcard) {
    // Any address: take the first device rdma_cm knows (it keeps its contexts open).
    int count = 0;
    ibv_context** contexts = rdma_get_devices(&count);
    if (contexts == nullptr || count == 0) {
      if (contexts != nullptr) rdma_free_devices(contexts);
      return Status(Code::kNoDevice, "no RDMA device: rdma_get_devices found none");
    }
    core.context = contexts[0];
    rdma_free_devices(contexts);
    return Status::ok();
  }
  // Not a local address of an RDMA device: a new id resolves it as a peer.
  auto remote_id = make_cm_id(core.anchor_channel.get());
  if (!remote_id) return remote_id.status();
  Deadline deadline(kResolveTimeoutMs);
  if (rdma_resolve_addr(remote_id->get(), nullptr, target->get(), kResolveTimeoutMs) != 0) {
    return Status(Code::kNoDevice, "no RDMA device reaches " + address.host + ": " +
                                       errno_text("rdma_resolve_addr"));
  }
  Status s = expect_cm_event(core.anchor_channel.get(), deadline, RDMA_CM_EVENT_ADDR_RESOLVED,
                             "address resolution");
  if (!s) {
    return Status(Code::kNoDevice, "no RDMA device reaches " + address.host + ": " + s.message());
  }
  core.anchor_id = std::move(remote_id.value());
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<Domain>> open_domain(const Address& address) {
  VIADUCT_RETURN_IF_ERROR(no_device_status());
  auto core = std::make_shared<DomainCore>();
  auto channel = make_event_channel();
  if (!channel) return channel.status();
  core->anchor_channel = std::move(channel.value());
  auto id = make_cm_id(core->anchor_channel.get());
  if (!id) return id.status();
  core->anchor_id = std::move(id.value());
  VIADUCT_RETURN_IF_ERROR(attach_device(*core, address));
  if (core->context == nullptr) core->context = core->anchor_id->verbs;

  ibv_device_attr attr{};
  if (ibv_query_device(core->context, &attr) != 0) {
    return Status(Code::kInternal, errno_text("ibv_query_device"));
  }
  // More outstanding reads than this buys nothing here and costs responder resources.
  constexpr int kMaxReadDepth = 16;
  core->responder_resources =
      static_cast<std::uint8_t>(std::clamp(attr.max_qp_rd_atom, 1, kMaxReadDepth));
  core->initiator_depth =
      static_cast<std::uint8_t>(std::clamp(attr.max_qp_init_rd_atom, 1, kMaxReadDepth));

  core->pd.reset(ibv_alloc_pd(core->context));
  if (!core->pd) return Status(Code::kResource, errno_text("ibv_alloc_pd"));
  return std::unique_ptr<Domain>(std::make_unique<VerbsDomain>(std::move(core)));
}

BackendReport probe() {
  BackendReport report;
  report.backend = BackendKind::kVerbs;
  int count = 0;
  DeviceListPtr list(ibv_get_device_list(&count));
  if (!list) {
    report.detail = "no RDMA device (" + errno_text("ibv_get_device_list") + ")";
    return report;
  }
  if (count == 0) {
    report.detail = "no RDMA device (ibv_get_device_list: empty list)";
    return report;
  }
  bool any_active = false;
  for (int i = 0; i < count; ++i) {
    ibv_device* device = list.get()[i];
    std::string entry = ibv_get_device_name(device);
    ContextPtr context(ibv_open_device(device));
    ibv_device_attr attr{};
    bool active = false;
    if (context && ibv_query_device(context.get(), &attr) == 0) {
      for (std::uint8_t port = 1; port <= attr.phys_port_cnt; ++port) {
        ibv_port_attr port_attr{};
        if (ibv_query_port(context.get(), port, &port_attr) == 0 &&
            port_attr.state == IBV_PORT_ACTIVE) {
          active = true;
          entry += " port " + std::to_string(port) + " ACTIVE";
        }
      }
    }
    if (!active) entry += " (no ACTIVE port)";
    any_active = any_active || active;
    report.devices.push_back(std::move(entry));
  }
  if (!any_active) {
    report.detail = "no RDMA device with an ACTIVE port";
    return report;
  }
  // Verbs alone is not enough: connections need the rdma_cm (rdma_ucm) too.
  EventChannelPtr channel(rdma_create_event_channel());
  if (!channel) {
    report.detail = "rdma_cm unavailable (" + errno_text("rdma_create_event_channel") + ")";
    return report;
  }
  report.usable = true;
  report.detail = "libibverbs + librdmacm, " + std::to_string(count) + " device(s)";
  return report;
}

}  // namespace viaduct::transport::verbs
