#include "cluster/cache/cache_protocol.hpp"

#include <cstring>

#include "transport/frame.hpp"

namespace viaduct::cluster::cache {

using transport::load_le;
using transport::store_le;

std::string_view cache_status_name(CacheStatus status) {
  switch (status) {
    case CacheStatus::kOk:
      return "ok";
    case CacheStatus::kNotFound:
      return "not-found";
    case CacheStatus::kVersionMismatch:
      return "version-mismatch";
    case CacheStatus::kNotServing:
      return "not-serving";
    case CacheStatus::kUnknownType:
      return "unknown-type";
    case CacheStatus::kInvalid:
      return "invalid";
    case CacheStatus::kDatabase:
      return "database";
    case CacheStatus::kBusy:
      return "busy";
  }
  return "unknown-status";
}

namespace {
Status check_sizes(CacheOp op, std::size_t type, std::size_t key, std::size_t value) {
  if (op == CacheOp::kPing || op == CacheOp::kProve) {
    // No record: neither type nor key; a prove carries its 16-byte nonce as the value.
    std::size_t nonce = op == CacheOp::kProve ? 16 : 0;
    if (type != 0 || key != 0 || value != nonce) {
      return Status(Code::kMalformed, op == CacheOp::kPing
                                          ? "ping: no type, key or value"
                                          : "prove: no type or key; the nonce is 16 bytes");
    }
    return Status::ok();
  }
  if (type == 0 || type > kMaxTypeBytes) {
    return Status(Code::kInvalidArgument, "type: 1 to 63 bytes");
  }
  if (key == 0 || key > kMaxKeyBytes) {
    return Status(Code::kInvalidArgument, "key: 1 to 1024 bytes");
  }
  if (value > kMaxValueBytes) {
    return Status(Code::kInvalidArgument, "value: at most 1 MiB (1048576 bytes)");
  }
  if (op != CacheOp::kPut && value != 0) {
    return Status(Code::kInvalidArgument, "value: only a put carries one");
  }
  return Status::ok();
}
}  // namespace

Status encode_cache_request(const CacheRequest& r, std::vector<std::byte>& out) {
  out.clear();
  if (auto s = check_sizes(r.op, r.type.size(), r.key.size(), r.value.size()); !s.is_ok()) {
    return s;
  }
  out.resize(kCacheRequestHeaderBytes + r.type.size() + r.key.size() + r.value.size());
  std::byte* p = out.data();
  std::memset(p, 0, kCacheRequestHeaderBytes);
  p[0] = std::byte{kCacheProtocolVersion};
  p[1] = static_cast<std::byte>(r.op);
  p[2] = std::byte{r.flags};
  p[3] = static_cast<std::byte>(r.type.size());
  store_le<std::uint16_t>(p + 4, static_cast<std::uint16_t>(r.key.size()));
  store_le<std::uint32_t>(p + 8, static_cast<std::uint32_t>(r.value.size()));
  store_le<std::uint64_t>(p + 16, r.map_epoch);
  store_le<std::uint64_t>(p + 24, r.expected_version);
  store_le<std::uint64_t>(p + 32, r.client_id);
  store_le<std::uint64_t>(p + 40, r.seq);
  p += kCacheRequestHeaderBytes;
  if (!r.type.empty()) std::memcpy(p, r.type.data(), r.type.size());
  p += r.type.size();
  if (!r.key.empty()) std::memcpy(p, r.key.data(), r.key.size());
  p += r.key.size();
  if (!r.value.empty()) std::memcpy(p, r.value.data(), r.value.size());
  return Status::ok();
}

Result<CacheRequest> decode_cache_request(std::span<const std::byte> bytes) {
  if (bytes.size() < kCacheRequestHeaderBytes) {
    return Status(Code::kMalformed, "request shorter than its 48-byte header");
  }
  const std::byte* p = bytes.data();
  if (std::to_integer<std::uint8_t>(p[0]) != kCacheProtocolVersion) {
    return Status(Code::kMalformed, "request version " +
                                        std::to_string(std::to_integer<int>(p[0])) +
                                        " (this server speaks 1)");
  }
  CacheRequest r;
  auto op = std::to_integer<std::uint8_t>(p[1]);
  if (op < 1 || op > 5) return Status(Code::kMalformed, "unknown op " + std::to_string(op));
  r.op = static_cast<CacheOp>(op);
  r.flags = std::to_integer<std::uint8_t>(p[2]);
  if ((r.flags & ~(kCacheFlagExpected | kCacheFlagForwarded)) != 0) {
    return Status(Code::kMalformed, "unknown flags");
  }
  // Padding is zero: one request has one encoding (what a MAC or a log compares is what was meant).
  if (load_le<std::uint16_t>(p + 6) != 0 || load_le<std::uint32_t>(p + 12) != 0) {
    return Status(Code::kMalformed, "request padding is not zero");
  }
  std::size_t type_len = std::to_integer<std::size_t>(p[3]);
  std::size_t key_len = load_le<std::uint16_t>(p + 4);
  std::size_t value_len = load_le<std::uint32_t>(p + 8);
  if (bytes.size() != kCacheRequestHeaderBytes + type_len + key_len + value_len) {
    return Status(Code::kMalformed, "request length does not match its header");
  }
  if (auto s = check_sizes(r.op, type_len, key_len, value_len); !s.is_ok()) return s;
  r.map_epoch = load_le<std::uint64_t>(p + 16);
  r.expected_version = load_le<std::uint64_t>(p + 24);
  r.client_id = load_le<std::uint64_t>(p + 32);
  r.seq = load_le<std::uint64_t>(p + 40);
  const std::byte* body = p + kCacheRequestHeaderBytes;
  r.type = std::string_view(reinterpret_cast<const char*>(body), type_len);
  r.key = bytes.subspan(kCacheRequestHeaderBytes + type_len, key_len);
  r.value = bytes.subspan(kCacheRequestHeaderBytes + type_len + key_len, value_len);
  return r;
}

void encode_cache_answer(std::uint64_t map_epoch, std::uint64_t record_version,
                         std::span<const std::byte> value, std::vector<std::byte>& out) {
  out.resize(kCacheAnswerHeaderBytes + value.size());
  std::memset(out.data(), 0, 8);
  out[0] = std::byte{kCacheProtocolVersion};
  store_le<std::uint64_t>(out.data() + 8, map_epoch);
  store_le<std::uint64_t>(out.data() + 16, record_version);
  if (!value.empty()) std::memcpy(out.data() + kCacheAnswerHeaderBytes, value.data(), value.size());
}

Result<CacheAnswer> decode_cache_answer(std::span<const std::byte> bytes) {
  if (bytes.size() < kCacheAnswerHeaderBytes ||
      std::to_integer<std::uint8_t>(bytes[0]) != kCacheProtocolVersion) {
    return Status(Code::kMalformed, "cache answer: malformed header");
  }
  CacheAnswer a;
  a.map_epoch = load_le<std::uint64_t>(bytes.data() + 8);
  a.record_version = load_le<std::uint64_t>(bytes.data() + 16);
  a.value = bytes.subspan(kCacheAnswerHeaderBytes);
  return a;
}

}  // namespace viaduct::cluster::cache
