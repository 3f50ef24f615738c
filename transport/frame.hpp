// Wire format of the request/response channel. All integers little-endian.
//
//   FrameHeader (24 bytes)   magic u16 'VD' | version u8 | type u8 | credits u16 | flags u16 |
//                            payload_len u32 | app_status u32 | request_id u64
//   payload                  payload_len bytes; with kFlagRendezvous it is a RendezvousRef
//                            naming the real payload in the sender's registered memory.
//
// Channel hello (connect / accept private data, 16 bytes + application bytes):
//   magic u32 'VDCH' | version u16 | recv_slots u16 | eager_threshold u32 | app_len u16 |
//   rendezvous_credits u16 | app...
// app_len is explicit because rdma_cm pads a connect request's private data to 56 bytes.
// rendezvous_credits: how many rendezvous requests the sender of the hello accepts unanswered
// (announced, and not yet acknowledged by rendezvous_done); 0 (a peer from before the field) means
// the receiver's own channel_max_rendezvous_requests.
//
// Eager or rendezvous: each side announces its eager threshold; a payload above the lower of the
// two goes by rendezvous, at or below it inline. Both sides compute the same minimum, so a
// receiver accepts a rendezvous of any size above it (and an inline payload up to its own
// threshold, the size of its receive slots).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "transport/status.hpp"

namespace viaduct::transport {

inline constexpr std::uint16_t kFrameMagic = 0x4456;  // "VD" on the wire
inline constexpr std::uint8_t kFrameVersion = 1;

enum class FrameType : std::uint8_t {
  kRequest = 1,
  kResponse = 2,
  kCredit = 3,          // carries only returned credits
  kRendezvousDone = 4,  // the receiver has read a rendezvous payload; the sender may reuse it
  kHeartbeat = 5,       // "still here" on an otherwise idle connection
};
std::string_view frame_type_name(FrameType t);

inline constexpr std::uint16_t kFlagRendezvous = 1u << 0;

struct FrameHeader {
  FrameType type = FrameType::kRequest;
  std::uint16_t credits = 0;
  std::uint16_t flags = 0;
  std::uint32_t payload_len = 0;
  std::uint32_t app_status = 0;
  std::uint64_t request_id = 0;
};
inline constexpr std::size_t kFrameHeaderBytes = 24;

struct RendezvousRef {
  std::uint64_t addr = 0;
  std::uint64_t key = 0;
  std::uint64_t length = 0;
};
inline constexpr std::size_t kRendezvousRefBytes = 24;

struct ChannelHello {
  std::uint16_t recv_slots = 0;
  std::uint32_t eager_threshold = 0;
  std::span<const std::byte> app;  // points into the decoded buffer
  std::uint16_t rendezvous_credits = 0;
};
inline constexpr std::uint32_t kHelloMagic = 0x48434456;  // "VDCH"
inline constexpr std::size_t kHelloBytes = 16;
// The largest connection private data (domain.hpp's kMaxPrivateData, which includes this header):
// a hello announcing more application bytes than fit there is malformed.
inline constexpr std::size_t kMaxPrivateDataBytes = 56;

// --- little-endian helpers (x86 and arm64 are little-endian; the memcpy keeps it alignment-safe,
// and the byte swap below keeps it right on a big-endian host) ---
template <typename T>
constexpr T byte_swap(T v) {
  if constexpr (sizeof(T) == 2) return static_cast<T>(__builtin_bswap16(v));
  if constexpr (sizeof(T) == 4) return static_cast<T>(__builtin_bswap32(v));
  if constexpr (sizeof(T) == 8) return static_cast<T>(__builtin_bswap64(v));
  return v;
}
template <typename T>
inline void store_le(std::byte* p, T v) {
  if constexpr (std::endian::native == std::endian::big) v = byte_swap(v);
  std::memcpy(p, &v, sizeof(T));
}
template <typename T>
inline T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) v = byte_swap(v);
  return v;
}

inline void encode_header(const FrameHeader& h, std::byte* out) {
  store_le<std::uint16_t>(out + 0, kFrameMagic);
  out[2] = static_cast<std::byte>(kFrameVersion);
  out[3] = static_cast<std::byte>(h.type);
  store_le<std::uint16_t>(out + 4, h.credits);
  store_le<std::uint16_t>(out + 6, h.flags);
  store_le<std::uint32_t>(out + 8, h.payload_len);
  store_le<std::uint32_t>(out + 12, h.app_status);
  store_le<std::uint64_t>(out + 16, h.request_id);
}

// What a received frame may announce, from this side's settings and the negotiated threshold.
struct FrameLimits {
  std::uint32_t max_eager_bytes = 0;    // inline payload: our own threshold (our slot size)
  std::uint64_t rendezvous_above = 0;   // a rendezvous must be larger: min of both thresholds
  std::uint64_t max_message_bytes = 0;  // a rendezvous may not be larger
};

// Decodes and validates a received frame of `frame.size()` bytes against `limits`. A rendezvous
// over max_message_bytes is refused with a message naming channel_max_message_bytes.
Status decode_frame(std::span<const std::byte> frame, const FrameLimits& limits,
                    FrameHeader* header, RendezvousRef* ref);
// Same, for peers with one threshold (max_eager serves as both bounds).
inline Status decode_frame(std::span<const std::byte> frame, std::uint32_t max_eager,
                           std::uint64_t max_rendezvous, FrameHeader* header, RendezvousRef* ref) {
  return decode_frame(frame, FrameLimits{max_eager, max_eager, max_rendezvous}, header, ref);
}

void encode_rendezvous(const RendezvousRef& ref, std::byte* out);

std::size_t encode_hello(const ChannelHello& hello, std::span<std::byte> out);
Status decode_hello(std::span<const std::byte> in, ChannelHello* hello);

}  // namespace viaduct::transport
