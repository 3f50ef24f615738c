// Shared pieces of the libfabric back end: RAII for fids, error mapping, the domain state shared
// by endpoints.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "transport/domain.hpp"

namespace viaduct::transport::ofi {

inline constexpr std::uint32_t kFiVersion = FI_VERSION(1, 17);

// Every fid is closed with fi_close; members holding them are declared in creation order so that
// destruction unwinds in reverse (rdma-core style). A fid that other fids are bound to (an EQ under
// a passive endpoint, a CQ under an endpoint, a domain under its MRs) refuses to close with
// -FI_EBUSY and stays allocated, together with everything below it (fd, fabric): so the return is
// checked, reported, and a debug build stops right there.
void report_close_failure(const fid* f, int rc);
inline void close_fid(fid* f) {
  if (f == nullptr) return;
  int rc = fi_close(f);
  if (rc != 0) report_close_failure(f, rc);
}
template <typename T>
struct FidDeleter {
  void operator()(T* p) const { close_fid(p != nullptr ? &p->fid : nullptr); }
};
template <typename T>
using FidPtr = std::unique_ptr<T, FidDeleter<T>>;

struct InfoDeleter {
  void operator()(fi_info* i) const { fi_freeinfo(i); }
};
using InfoPtr = std::unique_ptr<fi_info, InfoDeleter>;

inline Status fi_status(Code code, const std::string& what, long rc) {
  return {code, what + ": " + fi_strerror(static_cast<int>(rc < 0 ? -rc : rc))};
}

// fi_getinfo for `address`; `source` = listen side (FI_SOURCE).
Result<InfoPtr> get_info(const Address& address, bool source);

// State shared by the domain and every VI / listener made from it; kept alive by shared_ptr so a
// VI may outlive the Domain object the application dropped.
struct DomainCore {
  BackendKind backend = BackendKind::kOfiTcp;
  InfoPtr info;
  // Creation order: the fabric, then the domain opened on it (closed in reverse).
  FidPtr<fid_fabric> fabric;
  FidPtr<fid_domain> domain;
  bool virtual_addressing = false;
  bool provider_keys = false;
  std::uint64_t next_requested_key = 1;
};

// Opens an EQ with an fd wait object; returns it and its fd.
Result<FidPtr<fid_eq>> open_eq(DomainCore& core, int* fd);

// Reads one CM event with timeout; on error entries fills `err` and returns -FI_EAVAIL.
// `data` receives the private data of CONNREQ / CONNECTED / rejects.
struct CmEvent {
  std::uint32_t event = 0;
  fi_info* info = nullptr;  // owned by caller on FI_CONNREQ
  int error = 0;            // positive errno on error entries
  std::vector<std::byte> data;
};
// `wait` false: fi_eq_read, which returns at once (kTimeout when nothing is queued).
Result<CmEvent> read_cm_event(fid_eq* eq, int timeout_ms, bool wait = true);

// A connected endpoint, built by accept or connect.
Result<std::unique_ptr<VirtualInterface>> make_endpoint(std::shared_ptr<DomainCore> core,
                                                        fi_info* info, const ViOptions& options,
                                                        std::span<const std::byte> private_data,
                                                        bool active, int timeout_ms,
                                                        std::vector<std::byte>* reject_data);
// The passive side without the wait: fi_accept issued, the VI returned kConnecting;
// VirtualInterface::progress_connect() reads its FI_CONNECTED.
Result<std::unique_ptr<VirtualInterface>> start_passive_endpoint(std::shared_ptr<DomainCore> core,
                                                                 fi_info* info,
                                                                 const ViOptions& options,
                                                                 std::span<const std::byte> reply);

}  // namespace viaduct::transport::ofi
