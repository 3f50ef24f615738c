#include "cluster/partner_protocol.hpp"

#include <cstring>

#include "transport/frame.hpp"

namespace viaduct::cluster {

using transport::load_le;
using transport::store_le;

namespace {
constexpr std::uint32_t kReplicaMagic = 0x50524456;  // "VDRP"
}  // namespace

void encode_replica(const Replica& r, std::vector<std::byte>& out) {
  out.resize(kReplicaHeaderBytes + r.request.size() + r.response.size());
  store_le<std::uint32_t>(out.data(), kReplicaMagic);
  out[4] = std::byte{kReplicaVersion};
  out[5] = static_cast<std::byte>(r.kind);
  out[6] = out[7] = std::byte{0};
  store_le<std::uint64_t>(out.data() + 8, r.epoch);
  store_le<std::uint64_t>(out.data() + 16, r.sync_gen);
  store_le<std::uint64_t>(out.data() + 24, r.client_id);
  store_le<std::uint64_t>(out.data() + 32, r.seq);
  store_le<std::uint32_t>(out.data() + 40, r.app_status);
  store_le<std::uint32_t>(out.data() + 44, static_cast<std::uint32_t>(r.request.size()));
  if (!r.request.empty()) {
    std::memcpy(out.data() + kReplicaHeaderBytes, r.request.data(), r.request.size());
  }
  if (!r.response.empty()) {
    std::memcpy(out.data() + kReplicaHeaderBytes + r.request.size(), r.response.data(),
                r.response.size());
  }
}

Result<Replica> decode_replica(std::span<const std::byte> bytes) {
  if (bytes.size() < kReplicaHeaderBytes || load_le<std::uint32_t>(bytes.data()) != kReplicaMagic) {
    return Status(Code::kMalformed, "not a replica");
  }
  if (static_cast<std::uint8_t>(bytes[4]) != kReplicaVersion) {
    return Status(Code::kMalformed, "unknown replica version");
  }
  auto kind = static_cast<std::uint8_t>(bytes[5]);
  if (kind != 1 && kind != 2) return Status(Code::kMalformed, "bad replica kind");
  Replica r;
  r.kind = static_cast<ReplicaKind>(kind);
  r.epoch = load_le<std::uint64_t>(bytes.data() + 8);
  r.sync_gen = load_le<std::uint64_t>(bytes.data() + 16);
  r.client_id = load_le<std::uint64_t>(bytes.data() + 24);
  r.seq = load_le<std::uint64_t>(bytes.data() + 32);
  r.app_status = load_le<std::uint32_t>(bytes.data() + 40);
  std::uint32_t request_len = load_le<std::uint32_t>(bytes.data() + 44);
  if (request_len > bytes.size() - kReplicaHeaderBytes) {
    return Status(Code::kMalformed, "replica request length past the end");
  }
  r.request = bytes.subspan(kReplicaHeaderBytes, request_len);
  r.response = bytes.subspan(kReplicaHeaderBytes + request_len);
  return r;
}

}  // namespace viaduct::cluster
