#include "transport/frame.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace viaduct::transport {
namespace {

std::vector<std::byte> frame(FrameHeader h, std::size_t payload) {
  std::vector<std::byte> f(kFrameHeaderBytes + payload, std::byte{0x5a});
  h.payload_len = static_cast<std::uint32_t>(payload);
  encode_header(h, f.data());
  return f;
}

TEST(Frame, RoundTrip_AllFieldsSurvive) {
  auto f = frame({FrameType::kResponse, 17, 0, 0, 42, 0x1122334455667788ULL}, 10);
  FrameHeader h;
  RendezvousRef ref;
  ASSERT_TRUE(decode_frame(f, 1024, 1 << 20, &h, &ref).is_ok());
  EXPECT_EQ(h.type, FrameType::kResponse);
  EXPECT_EQ(h.credits, 17);
  EXPECT_EQ(h.app_status, 42u);
  EXPECT_EQ(h.request_id, 0x1122334455667788ULL);
  EXPECT_EQ(h.payload_len, 10u);
}

TEST(Frame, HeaderIsLittleEndianOnTheWire) {
  auto f = frame({FrameType::kRequest, 0x0102, 0, 0, 0, 0x0807060504030201ULL}, 0);
  EXPECT_EQ(f[0], std::byte{0x56});  // 'V'
  EXPECT_EQ(f[1], std::byte{0x44});  // 'D'
  EXPECT_EQ(f[4], std::byte{0x02});
  EXPECT_EQ(f[16], std::byte{0x01});
  EXPECT_EQ(f[23], std::byte{0x08});
}

TEST(Frame, Malformed_EachDefectGivesAClearError) {
  FrameHeader h;
  RendezvousRef ref;
  auto good = frame({FrameType::kRequest, 1, 0, 0, 0, 1}, 8);
  ASSERT_TRUE(decode_frame(good, 64, 1 << 20, &h, &ref).is_ok());

  auto shortf = std::vector<std::byte>(good.begin(), good.begin() + 10);
  EXPECT_EQ(decode_frame(shortf, 64, 1 << 20, &h, &ref).code(), Code::kMalformed);

  auto magic = good;
  magic[0] = std::byte{0};
  EXPECT_NE(decode_frame(magic, 64, 1 << 20, &h, &ref).message().find("magic"), std::string::npos);

  auto type = good;
  type[3] = std::byte{99};
  EXPECT_EQ(decode_frame(type, 64, 1 << 20, &h, &ref).code(), Code::kMalformed);

  auto length = good;
  store_le<std::uint32_t>(length.data() + 8, 0xffffffffu);  // absurd length
  EXPECT_EQ(decode_frame(length, 64, 1 << 20, &h, &ref).code(), Code::kMalformed);

  auto too_big = frame({FrameType::kRequest, 0, 0, 0, 0, 1}, 65);
  EXPECT_EQ(decode_frame(too_big, 64, 1 << 20, &h, &ref).code(), Code::kMalformed);

  auto flags = good;
  store_le<std::uint16_t>(flags.data() + 6, 0x8000);
  EXPECT_EQ(decode_frame(flags, 64, 1 << 20, &h, &ref).code(), Code::kMalformed);

  auto credit_with_payload = frame({FrameType::kCredit, 0, 0, 0, 0, 0}, 4);
  EXPECT_EQ(decode_frame(credit_with_payload, 64, 1 << 20, &h, &ref).code(), Code::kMalformed);
}

TEST(Frame, Rendezvous_AbsurdLengthRejected) {
  auto f = frame({FrameType::kRequest, 0, kFlagRendezvous, 0, 0, 1}, kRendezvousRefBytes);
  FrameHeader h;
  RendezvousRef ref;
  encode_rendezvous({0x1000, 7, 1ULL << 50}, f.data() + kFrameHeaderBytes);
  EXPECT_EQ(decode_frame(f, 64, 1 << 20, &h, &ref).code(), Code::kMalformed);
  encode_rendezvous({0x1000, 7, 4096}, f.data() + kFrameHeaderBytes);
  ASSERT_TRUE(decode_frame(f, 64, 1 << 20, &h, &ref).is_ok());
  EXPECT_EQ(ref.length, 4096u);
  EXPECT_EQ(ref.key, 7u);
}

TEST(Frame, Hello_RoundTripAndRejectsStrangers) {
  std::byte app[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  std::byte buf[64];
  std::size_t n = encode_hello({64, 16384, app}, buf);
  ChannelHello h;
  ASSERT_TRUE(decode_hello({buf, n}, &h).is_ok());
  EXPECT_EQ(h.recv_slots, 64);
  EXPECT_EQ(h.eager_threshold, 16384u);
  ASSERT_EQ(h.app.size(), 3u);
  // Padding after the application bytes (rdma_cm pads to 56) is not part of them.
  std::byte padded[56] = {};
  std::memcpy(padded, buf, n);
  ASSERT_TRUE(decode_hello(padded, &h).is_ok());
  EXPECT_EQ(h.app.size(), 3u);
  buf[0] = std::byte{0};
  EXPECT_EQ(decode_hello({buf, n}, &h).code(), Code::kMalformed);
  EXPECT_EQ(decode_hello({buf, 5}, &h).code(), Code::kMalformed);
}

// Two sides with different eager thresholds both send by rendezvous above the lower one: a
// receiver with the higher threshold must accept those (it refused anything at or below its own).
TEST(Frame, RendezvousAboveNegotiatedThreshold_Accepted) {
  FrameLimits limits{16384, 1024, 64 << 20};  // own threshold 16384, the peer's 1024
  FrameHeader h;
  RendezvousRef ref;
  auto f = frame({FrameType::kRequest, 0, kFlagRendezvous, 0, 0, 1}, kRendezvousRefBytes);
  for (std::uint64_t length : {1025ULL, 4096ULL, 16384ULL, 16385ULL}) {
    encode_rendezvous({0x1000, 7, length}, f.data() + kFrameHeaderBytes);
    EXPECT_TRUE(decode_frame(f, limits, &h, &ref).is_ok()) << length;
  }
  encode_rendezvous({0x1000, 7, 1024}, f.data() + kFrameHeaderBytes);
  EXPECT_EQ(decode_frame(f, limits, &h, &ref).code(), Code::kMalformed);  // would have been inline
  encode_rendezvous({0x1000, 7, (64 << 20) + 1}, f.data() + kFrameHeaderBytes);
  Status over = decode_frame(f, limits, &h, &ref);
  EXPECT_EQ(over.code(), Code::kMalformed);
  EXPECT_NE(over.message().find("channel_max_message_bytes"), std::string::npos);
  // Inline payloads are still bounded by our own receive slots.
  auto eager = frame({FrameType::kRequest, 0, 0, 0, 0, 1}, 16385);
  EXPECT_EQ(decode_frame(eager, limits, &h, &ref).code(), Code::kMalformed);
  auto fits = frame({FrameType::kRequest, 0, 0, 0, 0, 1}, 16384);
  EXPECT_TRUE(decode_frame(fits, limits, &h, &ref).is_ok());
}

// The issue's reproducer bytes: whatever they are fed to, they give a clean error, no crash.
TEST(Frame, IssueReproducerBytes_CleanError) {
  const std::uint8_t raw[] = {0x02, 0x05, 0xff, 0x44, 0x44, 0x00, 0x00, 0x44, 0xff, 0x44, 0x44};
  auto bytes = std::as_bytes(std::span(raw));
  FrameHeader h;
  RendezvousRef ref;
  EXPECT_EQ(decode_frame(bytes, FrameLimits{16384, 1024, 64 << 20}, &h, &ref).code(),
            Code::kMalformed);
  ChannelHello hello;
  EXPECT_EQ(decode_hello(bytes, &hello).code(), Code::kMalformed);
}

// A hello's fields decide what we do for the peer: each is bounded.
TEST(Frame, Hello_BoundsEveryField) {
  std::byte buf[kMaxPrivateDataBytes] = {};
  std::size_t n = encode_hello({8, 1024, {}, 5}, buf);
  ChannelHello h;
  ASSERT_TRUE(decode_hello({buf, n}, &h).is_ok());
  EXPECT_EQ(h.rendezvous_credits, 5);
  auto tiny = std::vector<std::byte>(buf, buf + n);
  store_le<std::uint32_t>(tiny.data() + 8, 8);  // eager threshold under a rendezvous reference
  EXPECT_EQ(decode_hello(tiny, &h).code(), Code::kMalformed);
  auto long_app = std::vector<std::byte>(200);
  std::memcpy(long_app.data(), buf, n);
  store_le<std::uint16_t>(long_app.data() + 12, 100);  // more than private data can carry
  EXPECT_EQ(decode_hello(long_app, &h).code(), Code::kMalformed);
}

}  // namespace
}  // namespace viaduct::transport
