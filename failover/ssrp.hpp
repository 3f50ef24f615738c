// MC-SQLR ("SSRP", SQL Server Resolution Protocol) wire format: the UDP name lookup.
//
// A client asks "who serves instance NAME?" (CLNT_UCAST_INST) and the active server answers with
// SVR_RESP, a text record carrying its address and one port per protocol. Speaking the public
// protocol lets independent clients (FreeTDS tsql, nmap, impacket) check conformance.
//
// viaduct's use of the record (all fields stay within what strict parsers accept):
//   ServerName   the server's host address (FreeTDS ignores it; viaduct clients connect to it)
//   InstanceName the service name
//   IsClustered  "Yes" (active/passive partners)
//   Version      "1.0.0.<epoch>": the takeover epoch, digits and dots, at most 16 bytes
//   tcp          port of the ofi+tcp endpoint
//   np           \\\\<host>\\pipe\\viaduct\\<name>: unused, present because real servers send
//                tcp, np, via in that order and FreeTDS's parser expects it
//   via          "<host>,0:<port>" of the verbs endpoint, when there is one
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/status.hpp"

namespace viaduct::failover::ssrp {

enum class MessageType : std::uint8_t {
  kClientBroadcastEx = 0x02,  // CLNT_BCAST_EX
  kClientUnicastEx = 0x03,    // CLNT_UCAST_EX: every instance on the host
  kClientUnicastInst = 0x04,  // CLNT_UCAST_INST: one instance by name
  kServerResponse = 0x05,     // SVR_RESP
  kClientUnicastDac = 0x0F,   // CLNT_UCAST_DAC: the admin port of an instance
};

inline constexpr std::size_t kMaxInstanceNameBytes = 32;    // in a request
inline constexpr std::size_t kMaxInstanceRespBytes = 1024;  // RESP_DATA for CLNT_UCAST_INST
inline constexpr std::size_t kMaxExRespBytes = 65535;       // RESP_DATA for the _EX requests
inline constexpr std::size_t kMaxServerNameBytes = 255;
inline constexpr std::size_t kMaxVersionBytes = 16;
inline constexpr std::uint16_t kStandardPort = 1434;

struct Request {
  MessageType type = MessageType::kClientUnicastInst;
  std::string instance_name;  // empty for the _EX requests
};

struct InstanceRecord {
  std::string server_name;    // viaduct: host address
  std::string instance_name;  // the service name
  bool clustered = true;
  std::uint64_t epoch = 0;     // carried in Version as 1.0.0.<epoch>
  std::uint16_t tcp_port = 0;  // 0: absent
  std::uint16_t via_port = 0;  // 0: absent
  std::string via_host;        // NETBIOS part of via
  friend bool operator==(const InstanceRecord&, const InstanceRecord&) = default;
};

// Requests. decode_request rejects anything malformed with kMalformed (the responder then stays
// silent, as the spec wants: no negative replies).
std::vector<std::byte> encode_request(const Request& request);
Result<Request> decode_request(std::span<const std::byte> packet);

// Responses. encode_response returns kInvalidArgument if the text would exceed `max_data`.
Result<std::vector<std::byte>> encode_response(std::span<const InstanceRecord> records,
                                               std::size_t max_data);
// The DAC reply: 0x05 0x06 0x00 0x01 port(u16 LE).
std::vector<std::byte> encode_dac_response(std::uint16_t port);
// Parses SVR_RESP; strict about the header (RESP_SIZE must equal the payload), tolerant about the
// text (splits on key names, unknown keys ignored). Records without InstanceName are dropped.
Result<std::vector<InstanceRecord>> decode_response(std::span<const std::byte> packet);

std::string record_text(const InstanceRecord& record);

}  // namespace viaduct::failover::ssrp
