#include "failover/ssrp.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace viaduct::failover::ssrp {
namespace {

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());  // memcpy(nullptr, ..., 0) is UB
  return v;
}

std::vector<std::byte> svr_resp(std::string_view text) {
  std::vector<std::byte> v{std::byte{5}, static_cast<std::byte>(text.size() & 0xff),
                           static_cast<std::byte>(text.size() >> 8)};
  auto t = bytes(text);
  v.insert(v.end(), t.begin(), t.end());
  return v;
}

TEST(Ssrp, InstanceRequest_RoundTrip) {
  auto packet = encode_request({MessageType::kClientUnicastInst, "ORDERS"});
  EXPECT_EQ(packet.size(), 1u + 6 + 1);
  auto r = decode_request(packet);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->type, MessageType::kClientUnicastInst);
  EXPECT_EQ(r->instance_name, "ORDERS");
  auto dac = decode_request(encode_request({MessageType::kClientUnicastDac, "X"}));
  ASSERT_TRUE(dac.is_ok());
  EXPECT_EQ(dac->type, MessageType::kClientUnicastDac);
  EXPECT_EQ(decode_request(bytes("\x03"))->type, MessageType::kClientUnicastEx);
}

TEST(Ssrp, MalformedRequests_AllRejected) {
  const std::vector<std::string> bad = {
      std::string(),                                                      // empty
      std::string("\x07", 1),                                             // unknown type
      std::string("\x04ORDERS"),                                          // no NUL
      std::string("\x04", 1) + std::string(1, '\0'),                      // empty name
      std::string("\x04") + std::string(33, 'A') + std::string(1, '\0'),  // name over 32 bytes
      std::string("\x04OR") + std::string(1, '\0') + "DERS" + std::string(1, '\0'),  // NUL inside
      std::string("\x04OR\x01S") + std::string(1, '\0'),                             // control byte
      std::string("\x03X"),                             // _EX with trailing bytes
      std::string("\x0F\x02X") + std::string(1, '\0'),  // DAC with wrong version
  };
  for (const auto& b : bad) {
    auto r = decode_request(bytes(b));
    EXPECT_FALSE(r.is_ok()) << "accepted " << b.size() << " bytes";
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().code(), Code::kMalformed);
    }
  }
}

TEST(Ssrp, Response_RoundTripCarriesAddressPortsAndEpoch) {
  InstanceRecord rec{"127.0.0.1", "ORDERS", true, 42, 7400, 7401, "NODE1"};
  auto packet = encode_response(std::span(&rec, 1), kMaxInstanceRespBytes);
  ASSERT_TRUE(packet.is_ok());
  auto decoded = decode_response(packet.value());
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  ASSERT_EQ(decoded->size(), 1u);
  EXPECT_EQ(decoded->front(), rec);
  // RESP_SIZE is little-endian and equals the payload length (strict clients check it).
  std::size_t size = static_cast<std::size_t>(packet.value()[1]) |
                     (static_cast<std::size_t>(packet.value()[2]) << 8);
  EXPECT_EQ(size, packet->size() - 3);
}

TEST(Ssrp, Response_ParsesSpecExampleAndToleratesOddFields) {
  auto spec = decode_response(svr_resp(
      "ServerName;NODE1;InstanceName;ORDERS;IsClustered;Yes;Version;1.0.0.0;tcp;7400;via;NODE1,0:"
      "7401;;"));
  ASSERT_TRUE(spec.is_ok());
  ASSERT_EQ(spec->size(), 1u);
  EXPECT_EQ(spec->front().tcp_port, 7400);
  EXPECT_EQ(spec->front().via_port, 7401);
  // Two records, an empty field inside one, np before tcp, unknown keys, a non-numeric version.
  auto two = decode_response(svr_resp(
      "ServerName;A;InstanceName;X;IsClustered;No;Version;15.0.2000.5;np;\\\\A\\pipe\\sql;;"
      "tcp;1433;bv;i;g;o;;ServerName;B;InstanceName;Y;IsClustered;Yes;Version;1.0.0.9;tcp;7500;;"));
  ASSERT_TRUE(two.is_ok());
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[0].instance_name, "X");
  EXPECT_EQ((*two)[0].tcp_port, 1433);
  EXPECT_FALSE((*two)[0].clustered);
  EXPECT_EQ((*two)[1].epoch, 9u);
}

TEST(Ssrp, BadResponses_Rejected) {
  EXPECT_FALSE(decode_response(bytes("\x05")).is_ok());
  auto wrong_size = svr_resp("ServerName;A;InstanceName;X;;");
  wrong_size[1] = std::byte{0x7f};
  EXPECT_FALSE(decode_response(wrong_size).is_ok());
  EXPECT_FALSE(decode_response(svr_resp("ServerName;A;InstanceName;X;tcp;99999;;")).is_ok());
  EXPECT_FALSE(decode_response(svr_resp("ServerName;A;InstanceName;X;via;nocolon;;")).is_ok());
  auto no_instance = decode_response(svr_resp("ServerName;A;tcp;1;;"));
  ASSERT_TRUE(no_instance.is_ok());
  EXPECT_TRUE(no_instance->empty());
}

TEST(Ssrp, ResponseSizeLimits_Enforced) {
  std::vector<InstanceRecord> many(
      40, InstanceRecord{"127.0.0.1", "SERVICE_NAME_X", true, 1, 7400, 0, ""});
  EXPECT_FALSE(encode_response(many, kMaxInstanceRespBytes).is_ok());
  EXPECT_TRUE(encode_response(many, kMaxExRespBytes).is_ok());
  InstanceRecord bad_name{"127.0.0.1", "HAS;SEMI", true, 1, 1, 0, ""};
  EXPECT_FALSE(encode_response(std::span(&bad_name, 1), kMaxInstanceRespBytes).is_ok());
}

TEST(Ssrp, DacResponse_IsSixBytes) {
  auto d = encode_dac_response(0x1234);
  ASSERT_EQ(d.size(), 6u);
  EXPECT_EQ(d[1], std::byte{6});
  EXPECT_EQ(d[4], std::byte{0x34});
  EXPECT_EQ(d[5], std::byte{0x12});
}

}  // namespace
}  // namespace viaduct::failover::ssrp
