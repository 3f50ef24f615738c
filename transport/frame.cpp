#include "transport/frame.hpp"

#include <bit>
#include <string>

#include "transport/domain.hpp"

namespace viaduct::transport {

static_assert(kFrameHeaderBytes == 2 + 1 + 1 + 2 + 2 + 4 + 4 + 8, "frame header layout");
static_assert(kRendezvousRefBytes == 3 * 8, "rendezvous ref layout");
static_assert(kHelloBytes == 4 + 2 + 2 + 4 + 4, "hello layout");
static_assert(kMaxPrivateDataBytes == kMaxPrivateData, "the hello is bounded by the private data");

std::string_view frame_type_name(FrameType t) {
  switch (t) {
    case FrameType::kRequest:
      return "request";
    case FrameType::kResponse:
      return "response";
    case FrameType::kCredit:
      return "credit";
    case FrameType::kRendezvousDone:
      return "rendezvous_done";
    case FrameType::kHeartbeat:
      return "heartbeat";
  }
  return "?";
}

Status decode_frame(std::span<const std::byte> frame, const FrameLimits& limits,
                    FrameHeader* header, RendezvousRef* ref) {
  if (frame.size() < kFrameHeaderBytes) {
    return {Code::kMalformed, "frame of " + std::to_string(frame.size()) +
                                  " bytes is shorter than the 24-byte header"};
  }
  const std::byte* p = frame.data();
  auto magic = load_le<std::uint16_t>(p);
  if (magic != kFrameMagic) return {Code::kMalformed, "bad frame magic"};
  auto version = static_cast<std::uint8_t>(p[2]);
  if (version != kFrameVersion) {
    return {Code::kMalformed, "unsupported frame version " + std::to_string(version)};
  }
  auto type = static_cast<std::uint8_t>(p[3]);
  if (type < static_cast<std::uint8_t>(FrameType::kRequest) ||
      type > static_cast<std::uint8_t>(FrameType::kHeartbeat)) {
    return {Code::kMalformed, "unknown frame type " + std::to_string(type)};
  }
  header->type = static_cast<FrameType>(type);
  header->credits = load_le<std::uint16_t>(p + 4);
  header->flags = load_le<std::uint16_t>(p + 6);
  header->payload_len = load_le<std::uint32_t>(p + 8);
  header->app_status = load_le<std::uint32_t>(p + 12);
  header->request_id = load_le<std::uint64_t>(p + 16);
  if ((header->flags & ~kFlagRendezvous) != 0) return {Code::kMalformed, "unknown frame flags"};
  if (header->payload_len != frame.size() - kFrameHeaderBytes) {
    return {Code::kMalformed, "frame says " + std::to_string(header->payload_len) +
                                  " payload bytes but carries " +
                                  std::to_string(frame.size() - kFrameHeaderBytes)};
  }
  bool data_frame = header->type == FrameType::kRequest || header->type == FrameType::kResponse;
  if (!data_frame && (header->payload_len != 0 || header->flags != 0)) {
    return {Code::kMalformed, "control frame with payload"};
  }
  if ((header->flags & kFlagRendezvous) != 0) {
    if (header->payload_len != kRendezvousRefBytes) {
      return {Code::kMalformed, "rendezvous frame without a 24-byte reference"};
    }
    ref->addr = load_le<std::uint64_t>(p + kFrameHeaderBytes);
    ref->key = load_le<std::uint64_t>(p + kFrameHeaderBytes + 8);
    ref->length = load_le<std::uint64_t>(p + kFrameHeaderBytes + 16);
    if (ref->length > limits.max_message_bytes) {
      return {Code::kMalformed, "rendezvous of " + std::to_string(ref->length) +
                                    " bytes over channel_max_message_bytes (" +
                                    std::to_string(limits.max_message_bytes) + ")"};
    }
    if (ref->length <= limits.rendezvous_above) {
      return {Code::kMalformed, "rendezvous of " + std::to_string(ref->length) +
                                    " bytes at or below the negotiated eager threshold (" +
                                    std::to_string(limits.rendezvous_above) + ")"};
    }
  } else if (header->payload_len > limits.max_eager_bytes) {
    return {Code::kMalformed, "eager payload over the threshold"};
  }
  return Status::ok();
}

void encode_rendezvous(const RendezvousRef& ref, std::byte* out) {
  store_le<std::uint64_t>(out, ref.addr);
  store_le<std::uint64_t>(out + 8, ref.key);
  store_le<std::uint64_t>(out + 16, ref.length);
}

std::size_t encode_hello(const ChannelHello& hello, std::span<std::byte> out) {
  std::size_t n = kHelloBytes + hello.app.size();
  if (out.size() < n) return 0;
  store_le<std::uint32_t>(out.data(), kHelloMagic);
  store_le<std::uint16_t>(out.data() + 4, kFrameVersion);
  store_le<std::uint16_t>(out.data() + 6, hello.recv_slots);
  store_le<std::uint32_t>(out.data() + 8, hello.eager_threshold);
  store_le<std::uint16_t>(out.data() + 12, static_cast<std::uint16_t>(hello.app.size()));
  store_le<std::uint16_t>(out.data() + 14, hello.rendezvous_credits);
  if (!hello.app.empty()) std::memcpy(out.data() + kHelloBytes, hello.app.data(), hello.app.size());
  return n;
}

Status decode_hello(std::span<const std::byte> in, ChannelHello* hello) {
  if (in.size() < kHelloBytes) return {Code::kMalformed, "channel hello too short"};
  if (load_le<std::uint32_t>(in.data()) != kHelloMagic) {
    return {Code::kMalformed, "peer is not a viaduct channel (bad hello magic)"};
  }
  if (load_le<std::uint16_t>(in.data() + 4) != kFrameVersion) {
    return {Code::kMalformed, "channel version mismatch"};
  }
  hello->recv_slots = load_le<std::uint16_t>(in.data() + 6);
  hello->eager_threshold = load_le<std::uint32_t>(in.data() + 8);
  if (hello->recv_slots < 2) return {Code::kMalformed, "peer posts fewer than 2 receives"};
  // Below 24 bytes the peer's own receive slots could not hold a rendezvous reference.
  if (hello->eager_threshold < kRendezvousRefBytes) {
    return {Code::kMalformed, "peer eager threshold below 24 bytes"};
  }
  auto app_len = load_le<std::uint16_t>(in.data() + 12);
  if (app_len > in.size() - kHelloBytes || app_len > kMaxPrivateDataBytes - kHelloBytes)
    return {Code::kMalformed, "channel hello app length too long"};
  hello->app = in.subspan(kHelloBytes, app_len);
  hello->rendezvous_credits = load_le<std::uint16_t>(in.data() + 14);
  return Status::ok();
}

}  // namespace viaduct::transport
