// Writes the seed corpora of tests/fuzz/corpus/: a few valid encodings per fuzz target, made by
// the real encoders so that they follow the wire formats as they are. Usage:
//   fuzz_make_seeds tests/fuzz/corpus
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/cache/cache_protocol.hpp"
#include "cluster/cache/cluster_map.hpp"
#include "cluster/cache/control_protocol.hpp"
#include "cluster/member_auth.hpp"
#include "cluster/partner_ping.hpp"
#include "cluster/partner_protocol.hpp"
#include "cluster/reply_cache.hpp"
#include "failover/request_header.hpp"
#include "failover/ssrp.hpp"
#include "tests/fuzz/fuzz_keys.hpp"
#include "transport/frame.hpp"

namespace fs = std::filesystem;
using namespace viaduct;

namespace {

fs::path g_root;

void write(std::string_view target, std::string_view name, std::span<const std::byte> bytes) {
  fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

void write_text(std::string_view target, std::string_view name, std::string_view text) {
  write(target, name, {reinterpret_cast<const std::byte*>(text.data()), text.size()});
}

std::vector<std::byte> bytes(std::string_view s) {
  auto p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

std::vector<std::byte> frame(transport::FrameHeader h, std::vector<std::byte> payload) {
  h.payload_len = static_cast<std::uint32_t>(payload.size());
  std::vector<std::byte> f(transport::kFrameHeaderBytes);
  transport::encode_header(h, f.data());
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

void frames() {
  using transport::FrameType;
  constexpr auto t = "fuzz_decode_frame";
  write(t, "request_empty", frame({FrameType::kRequest, 4, 0, 0, 0, 1}, {}));
  write(t, "request_eager", frame({FrameType::kRequest, 1, 0, 0, 0, 2}, bytes("hello, viaduct")));
  write(t, "response_status", frame({FrameType::kResponse, 2, 0, 0, 7, 2}, bytes("no")));
  write(t, "credit", frame({FrameType::kCredit, 16, 0, 0, 0, 0}, {}));
  write(t, "rendezvous_done", frame({FrameType::kRendezvousDone, 0, 0, 0, 0, 3}, {}));
  write(t, "heartbeat", frame({FrameType::kHeartbeat, 0, 0, 0, 0, 0}, {}));
  std::vector<std::byte> ref(transport::kRendezvousRefBytes);
  transport::encode_rendezvous({0x7f0000001000, 0x1234, 4096}, ref.data());
  write(t, "request_rendezvous",
        frame({FrameType::kRequest, 1, transport::kFlagRendezvous, 0, 0, 4}, ref));
}

void hellos() {
  constexpr auto t = "fuzz_decode_hello";
  std::array<std::byte, 64> buf{};
  auto n = transport::encode_hello({16, 4096, {}}, buf);
  write(t, "no_app", std::span(buf).first(n));
  auto app = cluster::encode_hello_app({cluster::HelloKind::kClient, 3, "orders"});
  n = transport::encode_hello({64, 8192, app}, buf);
  write(t, "client_app", std::span(buf).first(n));
  // rdma_cm pads a connect request's private data to 56 bytes.
  write(t, "client_app_padded_56", std::span(buf).first(56));
}

void cluster_hellos() {
  constexpr auto t = "fuzz_decode_hello_app";
  using cluster::HelloKind;
  write(t, "client", cluster::encode_hello_app({HelloKind::kClient, 0, "orders"}));
  write(t, "partner", cluster::encode_hello_app({HelloKind::kPartner, 5, "orders"}));
  write(t, "active", cluster::encode_hello_app({HelloKind::kActive, 6, "svc"}));
  write(t, "standby", cluster::encode_hello_app({HelloKind::kStandby, 6, "svc"}));
  write(t, "warm_max_name",
        cluster::encode_hello_app({HelloKind::kWarm, ~0ULL, std::string(31, 'n')}));
}

void pings() {
  constexpr auto t = "fuzz_decode_partner_datagram";
  std::array<std::byte, cluster::kClusterKeyBytes> bytes{};
  bytes.fill(std::byte{0x42});  // the fuzz target's key
  auto key = cluster::ClusterKey::from_bytes(bytes);
  std::array<std::byte, cluster::kPartnerDatagramBytes> out{};
  cluster::encode_partner_datagram({cluster::PartnerMessage::kPing, 0, 1, 7, 0, "orders"}, key,
                                   out);
  write(t, "ping", out);
  cluster::encode_partner_datagram(
      {cluster::PartnerMessage::kPong, cluster::kPartnerFlagActive, 42, 7, 3, "svc"}, key, out);
  write(t, "pong", out);
}

void replicas() {
  constexpr auto t = "fuzz_decode_replica";
  std::vector<std::byte> out;
  auto req = bytes("\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00put k v");
  auto resp = bytes("ok");
  cluster::encode_replica({cluster::ReplicaKind::kApply, 3, 1, 1, 2, 0, req, resp}, out);
  write(t, "apply", out);
  auto state = bytes("k=v;k2=v2");
  cluster::encode_replica({cluster::ReplicaKind::kSnapshot, 3, 1, 0, 0, 0, {}, state}, out);
  write(t, "snapshot", out);
  cluster::encode_replica({cluster::ReplicaKind::kApply, 1, 2, 9, 9, 5, {}, {}}, out);
  write(t, "apply_empty", out);
}

void request_headers() {
  constexpr auto t = "fuzz_decode_request_header";
  std::vector<std::byte> out(failover::kRequestHeaderBytes);
  failover::encode_request_header({0x1122334455667788, failover::kControlSeq}, out.data());
  out.push_back(failover::kControlEpoch);
  write(t, "control_epoch", out);
  out.resize(failover::kRequestHeaderBytes);
  failover::encode_request_header({7, 1}, out.data());
  auto payload = bytes("get k");
  out.insert(out.end(), payload.begin(), payload.end());
  write(t, "request_seq1", out);
}

void ssrp_requests() {
  constexpr auto t = "fuzz_ssrp_decode_request";
  using failover::ssrp::MessageType;
  write(t, "bcast_ex", failover::ssrp::encode_request({MessageType::kClientBroadcastEx, ""}));
  write(t, "ucast_ex", failover::ssrp::encode_request({MessageType::kClientUnicastEx, ""}));
  write(t, "ucast_inst",
        failover::ssrp::encode_request({MessageType::kClientUnicastInst, "orders"}));
  write(t, "ucast_dac", failover::ssrp::encode_request({MessageType::kClientUnicastDac, "svc"}));
}

void ssrp_responses() {
  constexpr auto t = "fuzz_ssrp_decode_response";
  failover::ssrp::InstanceRecord a{"127.0.0.1", "orders", true, 4, 7001, 0, ""};
  failover::ssrp::InstanceRecord b{"10.0.0.2", "svc", false, 0, 7002, 7003, "node2"};
  auto one = failover::ssrp::encode_response(std::span(&a, 1), 1024);
  write(t, "one_record", one.value());
  std::array both{a, b};
  auto two = failover::ssrp::encode_response(both, 65535);
  write(t, "two_records_via", two.value());
  // What a real SQL Server sends, with keys viaduct ignores (np, rpc) and a four-part version.
  std::string text =
      "ServerName;SQLHOST;InstanceName;MSSQLSERVER;IsClustered;No;Version;15.0.2000.5;"
      "tcp;1433;np;\\\\SQLHOST\\pipe\\sql\\query;rpc;SQLHOST;;";
  std::vector<std::byte> real{std::byte{0x05}, static_cast<std::byte>(text.size() & 0xff),
                              static_cast<std::byte>(text.size() >> 8)};
  auto tb = bytes(text);
  real.insert(real.end(), tb.begin(), tb.end());
  write(t, "sqlserver_style", real);
}

void addresses() {
  constexpr auto t = "fuzz_address_parse";
  write_text(t, "ofi_tcp_ipv4", "ofi+tcp://127.0.0.1:7000");
  write_text(t, "ofi_verbs_any_port", "ofi+verbs://10.0.0.1:0");
  write_text(t, "verbs_ipv6", "verbs://[fe80::1]:4791");
  write_text(t, "fake_name", "fake://svc:65535");
}

void tunables() {
  constexpr auto t = "fuzz_tunable_set_from_string";
  write_text(t, "connect_timeout", "connect_timeout_ms=2000");
  write_text(t, "retry_count", "verbs_retry_count=6");
  write_text(t, "negative", "fuzz_offset_us=-5");
  write_text(t, "int64_min", "fuzz_wide_bytes=-9223372036854775808");
}

// fuzz_member_auth: length-prefixed messages. The acceptor's step 1, then a step 2 with a wrong
// MAC (its nonce is fresh each run); and, first, an answer the key made for the connector's nonce.
void member_auth() {
  constexpr auto t = "fuzz_member_auth";
  auto with_length = [](std::vector<std::byte>& out, std::span<const std::byte> m) {
    out.push_back(static_cast<std::byte>(m.size()));
    out.insert(out.end(), m.begin(), m.end());
  };
  const auto& key = fuzz::fixed_cluster_key();
  std::vector<std::byte> steps;
  auto step1 = cluster::member_handshake_step1(fuzz::fixed_member_nonce());
  with_length(steps, step1);
  std::array<std::byte, cluster::kMemberStep2Bytes> step2{};
  std::memcpy(step2.data(), step1.data(), 8);
  step2[5] = std::byte{2};
  with_length(steps, step2);
  write(t, "step1_then_forged_step2", steps);

  cluster::MemberHandshake acceptor;
  auto answer1 = acceptor.answer(cluster::member_handshake_step1(fuzz::fixed_member_nonce()), key,
                                 fuzz::kFuzzServiceName);
  std::vector<std::byte> answer;
  with_length(answer, *answer1);
  write(t, "acceptor_answer", answer);
}

// fuzz_server_proof: answers the service key signed for the fixed nonce.
void server_proofs() {
  constexpr auto t = "fuzz_server_proof";
  for (std::uint64_t epoch : {std::uint64_t{1}, std::uint64_t{7}, ~std::uint64_t{0} >> 1}) {
    std::array<std::byte, failover::kProofAnswerBytes> answer;
    fuzz::fixed_cluster_key().sign_proof(fuzz::kFuzzServiceName, fuzz::fixed_proof_nonce(), epoch,
                                         answer);
    write(t, "epoch_" + std::to_string(epoch), answer);
  }
}

// Reply caches as an active serializes them into its snapshot: empty, one client, several
// clients with several entries (more than the fuzz target's small bounds keep).
void reply_caches() {
  constexpr auto t = "fuzz_reply_cache_restore";
  std::vector<std::byte> out;
  cluster::ReplyCache cache;
  cache.serialize(out, SIZE_MAX);
  write(t, "empty", out);
  cache.store(7, 1, 0, bytes("total=1"));
  cache.serialize(out, SIZE_MAX);
  write(t, "one", out);
  for (std::uint64_t client = 1; client <= 6; ++client) {
    for (std::uint64_t seq = 1; seq <= 10; ++seq) {
      cache.store(client, seq, static_cast<std::uint32_t>(seq % 3),
                  bytes("answer " + std::to_string(seq)));
    }
  }
  cache.serialize(out, SIZE_MAX);
  write(t, "many", out);
}

void cache_cluster() {
  namespace cc = cluster::cache;
  std::vector<std::byte> out;
  auto key = bytes("key");
  auto value = bytes("a value");
  cc::CacheRequest get{cc::CacheOp::kGet, 0, 3, 0, 1, 0, "users", key, {}};
  (void)cc::encode_cache_request(get, out);
  write("fuzz_decode_cache_request", "get", out);
  cc::CacheRequest put{cc::CacheOp::kPut, cc::kCacheFlagExpected, 3, 2, 1, 9, "users", key, value};
  (void)cc::encode_cache_request(put, out);
  write("fuzz_decode_cache_request", "cas", out);
  cc::encode_cache_answer(3, 4, value, out);
  write("fuzz_decode_cache_request", "answer", out);
  const auto& members = fuzz::fixed_cluster_key();
  cc::ControlMessage report{cc::ControlKind::kReport, 0, 5, 2, "s1", "s2", {}};
  (void)cc::encode_control(report, members, out);
  write("fuzz_decode_control", "report", out);
  cc::ControlMessage grant{cc::ControlKind::kLeaseGrant, 0, 6, 2, "s1", "master",
                           bytes("\x64\0\0\0")};
  (void)cc::encode_control(grant, members, out);
  write("fuzz_decode_control", "grant", out);
  cc::ControlMessage ask{
      cc::ControlKind::kMapRequest, cc::kFlagFromClient | cc::kFlagWatch, 7, 0, "", "client", {}};
  (void)cc::encode_control(ask, members.derive("clients"), out);
  write("fuzz_decode_control", "map_request_client", out);
  cc::ClusterMap map;
  map.epoch = 4;
  for (int i = 1; i <= 4; ++i) {
    cc::MapServer s;
    s.id = "s" + std::to_string(i);
    s.group = i <= 2 ? "g1" : "g2";
    s.listen = "ofi+tcp://127.0.0.1:" + std::to_string(7600 + i);
    s.control = "127.0.0.1:" + std::to_string(7700 + i);
    s.types = {"t" + std::to_string(i), "u" + std::to_string(i)};
    s.state = i == 2 ? cc::ServerState::kOffline : cc::ServerState::kOnline;
    s.generation = i == 2 ? 1 : 0;
    s.key = members.service_public_key(cc::server_key_name(s.id));
    map.servers.push_back(s);
  }
  write("fuzz_decode_cluster_map", "four", cc::encode_signed_map(map, members, "master"));
  cc::ControlMessage notice{cc::ControlKind::kNotice,
                            0,
                            8,
                            4,
                            "",
                            "master",
                            cc::encode_signed_map(map, members, "master")};
  (void)cc::encode_control(notice, members, out);
  write("fuzz_decode_control", "notice", out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_ROOT (tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  frames();
  hellos();
  cluster_hellos();
  pings();
  replicas();
  request_headers();
  ssrp_requests();
  ssrp_responses();
  addresses();
  tunables();
  member_auth();
  server_proofs();
  reply_caches();
  cache_cluster();
  return 0;
}
