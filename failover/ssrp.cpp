#include "failover/ssrp.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace viaduct::failover::ssrp {
namespace {

Status malformed(std::string why) {
  return {Code::kMalformed, "SSRP: " + std::move(why)};
}

// Instance and server names: printable ASCII without the record separator.
bool valid_name(std::string_view s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f && c != ';'; });
}

bool parse_u64(std::string_view s, std::uint64_t* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

bool parse_port(std::string_view s, std::uint16_t* out) {
  std::uint64_t v = 0;
  if (!parse_u64(s, &v) || v == 0 || v > 65535) return false;
  *out = static_cast<std::uint16_t>(v);
  return true;
}

}  // namespace

std::vector<std::byte> encode_request(const Request& request) {
  std::vector<std::byte> out;
  out.push_back(static_cast<std::byte>(request.type));
  if (request.type == MessageType::kClientUnicastDac) out.push_back(std::byte{0x01});
  if (request.type == MessageType::kClientUnicastInst ||
      request.type == MessageType::kClientUnicastDac) {
    for (char c : request.instance_name) out.push_back(static_cast<std::byte>(c));
    out.push_back(std::byte{0});
  }
  return out;
}

Result<Request> decode_request(std::span<const std::byte> packet) {
  if (packet.empty()) return malformed("empty packet");
  Request r;
  auto type = static_cast<std::uint8_t>(packet[0]);
  std::span<const std::byte> name_bytes;
  switch (type) {
    case 0x02:
    case 0x03:
      if (packet.size() != 1) return malformed("_EX request with trailing bytes");
      r.type = static_cast<MessageType>(type);
      return r;
    case 0x04:
      r.type = MessageType::kClientUnicastInst;
      name_bytes = packet.subspan(1);
      break;
    case 0x0F:
      if (packet.size() < 2 || packet[1] != std::byte{0x01}) {
        return malformed("DAC request without protocol version 1");
      }
      r.type = MessageType::kClientUnicastDac;
      name_bytes = packet.subspan(2);
      break;
    default:
      return malformed("unknown message type " + std::to_string(type));
  }
  // The name ends with the packet's one NUL, which must be its last byte.
  if (name_bytes.empty() || name_bytes.back() != std::byte{0}) {
    return malformed("instance name not NUL-terminated");
  }
  std::string name(reinterpret_cast<const char*>(name_bytes.data()), name_bytes.size() - 1);
  if (name.find('\0') != std::string::npos) return malformed("NUL inside instance name");
  if (!valid_name(name, kMaxInstanceNameBytes)) {
    return malformed("instance name empty, over 32 bytes or not printable");
  }
  r.instance_name = std::move(name);
  return r;
}

std::string record_text(const InstanceRecord& rec) {
  std::string s = "ServerName;" + rec.server_name + ";InstanceName;" + rec.instance_name +
                  ";IsClustered;" + (rec.clustered ? "Yes" : "No") + ";Version;1.0.0." +
                  std::to_string(rec.epoch);
  if (rec.tcp_port != 0) s += ";tcp;" + std::to_string(rec.tcp_port);
  // Real servers send tcp, then np, then via, and FreeTDS's listing expects exactly that order:
  // an np field (a pipe name nobody opens) keeps strict parsers from flagging the via field.
  s += ";np;\\\\" + rec.server_name + "\\pipe\\viaduct\\" + rec.instance_name;
  if (rec.via_port != 0) s += ";via;" + rec.via_host + ",0:" + std::to_string(rec.via_port);
  s += ";;";
  return s;
}

Result<std::vector<std::byte>> encode_response(std::span<const InstanceRecord> records,
                                               std::size_t max_data) {
  std::string text;
  for (const auto& rec : records) {
    if (!valid_name(rec.server_name, kMaxServerNameBytes) || !valid_name(rec.instance_name, 255) ||
        (rec.via_port != 0 && !valid_name(rec.via_host, 15))) {
      return Status(Code::kInvalidArgument, "SSRP: a name is empty, too long or not printable");
    }
    if (rec.epoch > 9'999'999'999ULL)
      return Status(Code::kInvalidArgument, "SSRP: epoch too large");
    text += record_text(rec);
  }
  if (text.size() > max_data || text.size() > 0xffff) {
    return Status(Code::kInvalidArgument, "SSRP: response of " + std::to_string(text.size()) +
                                              " bytes over the limit of " +
                                              std::to_string(max_data));
  }
  std::vector<std::byte> out(3 + text.size());
  out[0] = static_cast<std::byte>(MessageType::kServerResponse);
  out[1] = static_cast<std::byte>(text.size() & 0xff);
  out[2] = static_cast<std::byte>(text.size() >> 8);
  std::memcpy(out.data() + 3, text.data(), text.size());
  return out;
}

std::vector<std::byte> encode_dac_response(std::uint16_t port) {
  return {std::byte{0x05},
          std::byte{0x06},
          std::byte{0x00},
          std::byte{0x01},
          static_cast<std::byte>(port & 0xff),
          static_cast<std::byte>(port >> 8)};
}

Result<std::vector<InstanceRecord>> decode_response(std::span<const std::byte> packet) {
  if (packet.size() < 3 || packet[0] != std::byte{0x05}) return malformed("not an SVR_RESP");
  std::size_t size =
      static_cast<std::size_t>(packet[1]) | (static_cast<std::size_t>(packet[2]) << 8);
  if (size != packet.size() - 3) return malformed("RESP_SIZE does not match the payload");
  std::string_view text(reinterpret_cast<const char*>(packet.data() + 3), size);
  // Fields alternate key;value. Empty fields (";;") end a record, but may also stand inside one,
  // so records are split where "ServerName" starts again rather than on ";;".
  std::vector<std::string_view> fields;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto semi = text.find(';', pos);
    if (semi == std::string_view::npos) {
      if (pos < text.size()) fields.push_back(text.substr(pos));
      break;
    }
    fields.push_back(text.substr(pos, semi - pos));
    pos = semi + 1;
  }
  std::vector<InstanceRecord> records;
  InstanceRecord cur;
  bool open = false;
  auto flush = [&] {
    if (open && !cur.instance_name.empty()) records.push_back(cur);
    cur = {};
    open = false;
  };
  for (std::size_t i = 0; i < fields.size(); ++i) {
    std::string_view key = fields[i];
    if (key.empty()) continue;
    std::string_view value = i + 1 < fields.size() ? fields[i + 1] : std::string_view{};
    if (key == "ServerName") {
      flush();
      open = true;
      cur.server_name = std::string(value);
    } else if (!open) {
      continue;
    } else if (key == "InstanceName") {
      cur.instance_name = std::string(value);
    } else if (key == "IsClustered") {
      cur.clustered = value == "Yes";
    } else if (key == "Version") {
      // 1.0.0.<epoch>; any other version text simply means epoch 0.
      auto dot = value.rfind('.');
      std::uint64_t epoch = 0;
      if (dot != std::string_view::npos && parse_u64(value.substr(dot + 1), &epoch))
        cur.epoch = epoch;
    } else if (key == "tcp") {
      if (!parse_port(value, &cur.tcp_port)) return malformed("bad tcp port");
    } else if (key == "via") {
      auto comma = value.find(',');
      auto colon = value.rfind(':');
      if (comma == std::string_view::npos || colon == std::string_view::npos || colon < comma ||
          !parse_port(value.substr(colon + 1), &cur.via_port)) {
        return malformed("bad via field");
      }
      cur.via_host = std::string(value.substr(0, comma));
    } else {
      continue;  // np, rpc, spx, adsp, bv and unknown keys: not ours
    }
    ++i;  // consumed the value
  }
  flush();
  return records;
}

}  // namespace viaduct::failover::ssrp
