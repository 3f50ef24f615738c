// libfabric domain, memory registration, listener and connection requests.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "transport/ofi/ofi_common.hpp"
#include "transport/ofi/ofi_domain.hpp"
#include "transport/tunables.hpp"

namespace viaduct::transport::ofi {
namespace {

const char* provider_name(BackendKind kind) {
  return kind == BackendKind::kOfiVerbs ? "verbs" : "tcp";
}

class OfiMemoryRegion final : public MemoryRegion {
 public:
  OfiMemoryRegion(std::shared_ptr<DomainCore> core, std::byte* data, std::size_t size,
                  FidPtr<fid_mr> mr, bool virt)
      : MemoryRegion(data, size), core_(std::move(core)), mr_(std::move(mr)) {
    local_desc_ = fi_mr_desc(mr_.get());
    remote_key_ = fi_mr_key(mr_.get());
    virtual_addressing_ = virt;
  }

 private:
  // The domain must outlive its registrations (fi_close on a domain with MRs is -FI_EBUSY), even
  // when the application drops the Domain before a buffer pool: hold it, and declare it first.
  std::shared_ptr<DomainCore> core_;
  FidPtr<fid_mr> mr_;
};

std::uint16_t bound_port(fid_t fid) {
  sockaddr_storage ss{};
  size_t len = sizeof(ss);
  if (fi_getname(fid, &ss, &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

class OfiConnectionRequest final : public ConnectionRequest {
 public:
  OfiConnectionRequest(std::shared_ptr<DomainCore> core, fid_pep* pep, InfoPtr info,
                       std::vector<std::byte> data)
      : core_(std::move(core)), pep_(pep), info_(std::move(info)), data_(std::move(data)) {}

  [[nodiscard]] std::span<const std::byte> private_data() const override { return data_; }

  Result<std::unique_ptr<VirtualInterface>> accept(std::span<const std::byte> reply,
                                                   const ViOptions& options,
                                                   int timeout_ms) override {
    if (!info_) return Status(Code::kInvalidArgument, "connection request already answered");
    InfoPtr info = std::move(info_);
    return make_endpoint(core_, info.get(), options, reply, /*active=*/false, timeout_ms, nullptr);
  }

  Result<std::unique_ptr<VirtualInterface>> start_accept(std::span<const std::byte> reply,
                                                         const ViOptions& options) override {
    if (!info_) return Status(Code::kInvalidArgument, "connection request already answered");
    InfoPtr info = std::move(info_);
    return start_passive_endpoint(core_, info.get(), options, reply);
  }

  Status reject(std::span<const std::byte> reason) override {
    if (!info_) return {Code::kInvalidArgument, "connection request already answered"};
    InfoPtr info = std::move(info_);
    int rc = fi_reject(pep_, info->handle, reason.data(), reason.size());
    if (rc != 0) return fi_status(Code::kInternal, "fi_reject", rc);
    return Status::ok();
  }

 private:
  std::shared_ptr<DomainCore> core_;
  fid_pep* pep_;
  InfoPtr info_;
  std::vector<std::byte> data_;
};

class OfiListener final : public Listener {
 public:
  static Result<std::unique_ptr<Listener>> create(std::shared_ptr<DomainCore> core,
                                                  const Address& local) {
    auto info = get_info(local, /*source=*/true);
    if (!info) return info.status();
    auto listener = std::unique_ptr<OfiListener>(new OfiListener(core));  // private ctor
    // The EQ first: the passive endpoint is bound to it, so it must be closed before the EQ.
    auto eq = open_eq(*core, &listener->eq_fd_);
    if (!eq) return eq.status();
    listener->eq_ = std::move(eq.value());
    fid_pep* pep = nullptr;
    int rc = fi_passive_ep(core->fabric.get(), info->get(), &pep, nullptr);
    if (rc != 0) return fi_status(Code::kInternal, "fi_passive_ep", rc);
    listener->pep_.reset(pep);
    rc = fi_pep_bind(pep, &listener->eq_->fid, 0);
    if (rc != 0) return fi_status(Code::kInternal, "fi_pep_bind", rc);
    rc = fi_listen(pep);
    if (rc != 0) return fi_status(Code::kInternal, "fi_listen " + local.to_string(), rc);
    listener->address_ = local;
    listener->address_.port = bound_port(&pep->fid);
    return std::unique_ptr<Listener>(std::move(listener));
  }

  [[nodiscard]] const Address& address() const override { return address_; }
  [[nodiscard]] int wait_fd() const override { return eq_fd_; }
  bool arm() override {
    fid* fids[1] = {&eq_->fid};
    return fi_trywait(core_->fabric.get(), fids, 1) == FI_SUCCESS;
  }

  Result<std::unique_ptr<ConnectionRequest>> get_request(int timeout_ms) override {
    for (;;) {
      auto ev = read_cm_event(eq_.get(), timeout_ms);
      if (!ev) return ev.status();
      if (ev->event == FI_CONNREQ) {
        return std::unique_ptr<ConnectionRequest>(std::make_unique<OfiConnectionRequest>(
            core_, pep_.get(), InfoPtr(ev->info), std::move(ev->data)));
      }
      if (ev->info != nullptr) fi_freeinfo(ev->info);
      // Anything else on a passive endpoint's EQ is noise (e.g. an aborted request); keep going.
    }
  }

 private:
  explicit OfiListener(std::shared_ptr<DomainCore> core) : core_(std::move(core)) {}
  // Declared in creation order, destroyed in reverse: the passive endpoint (bound to the EQ) is
  // closed before the EQ, the EQ (opened on the fabric) before the domain core lets go of it.
  std::shared_ptr<DomainCore> core_;
  FidPtr<fid_eq> eq_;
  FidPtr<fid_pep> pep_;
  int eq_fd_ = -1;
  Address address_;
};

class OfiDomain final : public Domain {
 public:
  explicit OfiDomain(std::shared_ptr<DomainCore> core) : core_(std::move(core)) {}

  [[nodiscard]] BackendKind backend() const override { return core_->backend; }

  Result<std::unique_ptr<MemoryRegion>> register_memory(void* data, std::size_t size,
                                                        Access access) override {
    std::uint64_t flags = FI_SEND | FI_RECV | FI_READ | FI_WRITE;
    if (has(access, Access::kRemoteRead)) flags |= FI_REMOTE_READ;
    if (has(access, Access::kRemoteWrite)) flags |= FI_REMOTE_WRITE;
    fid_mr* mr = nullptr;
    // Without FI_MR_PROV_KEY the application picks keys; they must be unique in the domain.
    std::uint64_t requested = core_->provider_keys ? 0 : core_->next_requested_key++;
    int rc = fi_mr_reg(core_->domain.get(), data, size, flags, 0, requested, 0, &mr, nullptr);
    if (rc != 0) return fi_status(Code::kResource, "fi_mr_reg", rc);
    return std::unique_ptr<MemoryRegion>(std::make_unique<OfiMemoryRegion>(
        core_, static_cast<std::byte*>(data), size, FidPtr<fid_mr>(mr), core_->virtual_addressing));
  }

  Result<std::unique_ptr<Listener>> listen(const Address& local) override {
    return OfiListener::create(core_, local);
  }

  Result<std::unique_ptr<VirtualInterface>> connect(const Address& remote,
                                                    std::span<const std::byte> private_data,
                                                    const ViOptions& options, int timeout_ms,
                                                    std::vector<std::byte>* reject_data) override {
    if (private_data.size() > kMaxPrivateData) {
      return Status(Code::kInvalidArgument, "private data over 56 bytes");
    }
    auto info = connect_info(remote);
    if (!info) return info.status();
    return make_endpoint(core_, info->get(), options, private_data, /*active=*/true, timeout_ms,
                         reject_data);
  }

 private:
  // fi_getinfo asks the provider to enumerate interfaces (netlink dumps, ethtool ioctls): about
  // 0.3 ms on the tcp provider, paid on every connect, and a failover's reconnect waits for it.
  // The domain's own info already names the fabric and domain; for tcp only the destination
  // differs, so a copy with the peer's sockaddr (numeric host, as addresses are) does. The source
  // is left to the kernel's routing. Other providers keep the full resolution.
  Result<InfoPtr> connect_info(const Address& remote) {
    if (core_->backend != BackendKind::kOfiTcp) return get_info(remote, /*source=*/false);
    sockaddr_storage peer{};
    socklen_t peer_len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&peer);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&peer);
    if (inet_pton(AF_INET, remote.host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(remote.port);
      peer_len = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, remote.host.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(remote.port);
      peer_len = sizeof(sockaddr_in6);
    } else {
      return get_info(remote, /*source=*/false);  // a name: let the provider resolve it
    }
    InfoPtr info(fi_dupinfo(core_->info.get()));
    if (!info) return Status(Code::kResource, "fi_dupinfo");
    // fi_freeinfo frees these with free(): allocate them the same way.
    std::free(info->src_addr);
    info->src_addr = nullptr;
    info->src_addrlen = 0;
    std::free(info->dest_addr);
    info->dest_addr = std::malloc(peer_len);
    if (info->dest_addr == nullptr) return Status(Code::kResource, "malloc");
    std::memcpy(info->dest_addr, &peer, peer_len);
    info->dest_addrlen = peer_len;
    info->addr_format = peer.ss_family == AF_INET ? FI_SOCKADDR_IN : FI_SOCKADDR_IN6;
    return info;
  }

  std::shared_ptr<DomainCore> core_;
};

}  // namespace

void report_close_failure(const fid* f, int rc) {
  // Not on any hot path: a failed close leaks the fid and what hangs off it, which only shows up
  // much later (fd exhaustion, LeakSanitizer). Say so where it happens.
  std::fprintf(stderr, "viaduct: fi_close(fclass %zu) failed: %s; the object leaks\n", f->fclass,
               fi_strerror(rc < 0 ? -rc : rc));
  assert(rc == 0 && "fi_close failed: a fid was closed before the fids bound to it");
}

Result<InfoPtr> get_info(const Address& address, bool source) {
  InfoPtr hints(fi_allocinfo());
  if (!hints) return Status(Code::kResource, "fi_allocinfo");
  hints->ep_attr->type = FI_EP_MSG;
  hints->caps = FI_MSG | FI_RMA;
  hints->mode = 0;
  hints->addr_format = FI_SOCKADDR;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->fabric_attr->prov_name = strdup(provider_name(address.backend));
  fi_info* raw = nullptr;
  std::string port = address.port_string();
  int rc = fi_getinfo(kFiVersion, address.host.c_str(), port.c_str(), source ? FI_SOURCE : 0,
                      hints.get(), &raw);
  if (rc != 0 || raw == nullptr) {
    Code code = (rc == -FI_ENODATA) ? Code::kNoDevice : Code::kInternal;
    return fi_status(code,
                     std::string("fi_getinfo(") + provider_name(address.backend) + ", " +
                         address.host + ":" + port + ")",
                     rc == 0 ? FI_ENODATA : rc);
  }
  return InfoPtr(raw);
}

Result<FidPtr<fid_eq>> open_eq(DomainCore& core, int* fd) {
  fi_eq_attr attr{};
  attr.size = 64;
  attr.wait_obj = FI_WAIT_FD;
  fid_eq* eq = nullptr;
  int rc = fi_eq_open(core.fabric.get(), &attr, &eq, nullptr);
  if (rc != 0) return fi_status(Code::kInternal, "fi_eq_open", rc);
  FidPtr<fid_eq> owned(eq);
  rc = fi_control(&eq->fid, FI_GETWAIT, fd);
  if (rc != 0) return fi_status(Code::kInternal, "fi_control(FI_GETWAIT) on EQ", rc);
  return owned;
}

Result<CmEvent> read_cm_event(fid_eq* eq, int timeout_ms, bool wait) {
  // Entry plus the largest private data a provider hands us.
  alignas(fi_eq_cm_entry) std::byte buf[sizeof(fi_eq_cm_entry) + 256];
  CmEvent ev;
  ssize_t rc = wait ? fi_eq_sread(eq, &ev.event, buf, sizeof(buf), timeout_ms, 0)
                    : fi_eq_read(eq, &ev.event, buf, sizeof(buf), 0);
  if (rc == -FI_EAGAIN || rc == -FI_ETIMEDOUT) {
    return Status(Code::kTimeout,
                  "timed out: no answer within " + std::to_string(timeout_ms) + " ms");
  }
  if (rc == -FI_EAVAIL) {
    fi_eq_err_entry err{};
    ssize_t er = fi_eq_readerr(eq, &err, 0);
    if (er < 0) return fi_status(Code::kInternal, "fi_eq_readerr", er);
    ev.error = err.err;
    if (err.err_data != nullptr && err.err_data_size > 0) {
      auto* p = static_cast<const std::byte*>(err.err_data);
      ev.data.assign(p, p + err.err_data_size);
    }
    return ev;
  }
  if (rc < 0) return fi_status(Code::kInternal, "fi_eq_sread", rc);
  auto* entry = reinterpret_cast<fi_eq_cm_entry*>(buf);
  ev.info = entry->info;
  auto n = static_cast<std::size_t>(rc);
  if (n > sizeof(fi_eq_cm_entry)) {
    ev.data.assign(buf + sizeof(fi_eq_cm_entry), buf + n);
  }
  return ev;
}

Result<std::unique_ptr<Domain>> open_domain(const Address& address) {
  auto info = get_info(address, /*source=*/false);
  if (!info) return info.status();
  auto core = std::make_shared<DomainCore>();
  core->backend = address.backend;
  core->info = std::move(info.value());
  fid_fabric* fabric = nullptr;
  int rc = fi_fabric(core->info->fabric_attr, &fabric, nullptr);
  if (rc != 0) return fi_status(Code::kInternal, "fi_fabric", rc);
  core->fabric.reset(fabric);
  fid_domain* domain = nullptr;
  rc = fi_domain(fabric, core->info.get(), &domain, nullptr);
  if (rc != 0) return fi_status(Code::kInternal, "fi_domain", rc);
  core->domain.reset(domain);
  core->virtual_addressing = (core->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) != 0;
  core->provider_keys = (core->info->domain_attr->mr_mode & FI_MR_PROV_KEY) != 0;
  return std::unique_ptr<Domain>(std::make_unique<OfiDomain>(std::move(core)));
}

BackendReport probe(BackendKind kind) {
  BackendReport report{kind};
  InfoPtr hints(fi_allocinfo());
  hints->ep_attr->type = FI_EP_MSG;
  hints->caps = FI_MSG | FI_RMA;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->fabric_attr->prov_name = strdup(provider_name(kind));
  fi_info* raw = nullptr;
  int rc = fi_getinfo(kFiVersion, nullptr, nullptr, 0, hints.get(), &raw);
  InfoPtr list(raw);
  if (rc != 0 || raw == nullptr) {
    report.detail = "libfabric " + std::to_string(FI_MAJOR(fi_version())) + "." +
                    std::to_string(FI_MINOR(fi_version())) + ": provider " + provider_name(kind) +
                    " has no FI_EP_MSG endpoint here (" + fi_strerror(rc < 0 ? -rc : FI_ENODATA) +
                    ")";
    return report;
  }
  report.usable = true;
  for (fi_info* i = raw; i != nullptr; i = i->next) {
    std::string dev = std::string(i->domain_attr->name) + " (" + i->fabric_attr->prov_name + " " +
                      std::to_string(FI_MAJOR(i->fabric_attr->prov_version)) + "." +
                      std::to_string(FI_MINOR(i->fabric_attr->prov_version)) + ")";
    bool seen = false;
    for (auto& d : report.devices) seen = seen || d == dev;
    if (!seen) report.devices.push_back(dev);
  }
  report.detail = std::string("libfabric ") + std::to_string(FI_MAJOR(fi_version())) + "." +
                  std::to_string(FI_MINOR(fi_version()));
  return report;
}

}  // namespace viaduct::transport::ofi
