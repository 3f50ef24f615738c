#include "cluster/cache/cluster_map.hpp"

#include <cstring>
#include <set>

#include "cluster/cache/record_store.hpp"
#include "cluster/member_auth.hpp"
#include "transport/frame.hpp"

namespace viaduct::cluster::cache {

using transport::load_le;
using transport::store_le;

std::string_view server_state_name(ServerState state) {
  switch (state) {
    case ServerState::kOnline:
      return "online";
    case ServerState::kOffline:
      return "offline";
    case ServerState::kReturning:
      return "returning";
  }
  return "?";
}

const MapServer* ClusterMap::find(std::string_view id) const {
  for (const auto& s : servers) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

MapServer* ClusterMap::find(std::string_view id) {
  for (auto& s : servers) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

const MapServer* ClusterMap::owner_of(std::string_view type) const {
  for (const auto& s : servers) {
    for (const auto& t : s.types) {
      if (t == type) return &s;
    }
  }
  return nullptr;
}

const MapServer* ClusterMap::failover_for(const MapServer& owner) const {
  std::size_t at = static_cast<std::size_t>(&owner - servers.data());
  if (at >= servers.size()) return nullptr;
  for (std::size_t step = 1; step < servers.size(); ++step) {
    const MapServer& candidate = servers[(at + step) % servers.size()];
    if (candidate.group == owner.group && candidate.state == ServerState::kOnline) {
      return &candidate;
    }
  }
  return nullptr;
}

std::vector<const MapServer*> ClusterMap::group_of(std::string_view group) const {
  std::vector<const MapServer*> members;
  for (const auto& s : servers) {
    if (s.group == group) members.push_back(&s);
  }
  return members;
}

Status ClusterMap::check() const {
  if (servers.empty()) return Status(Code::kInvalidArgument, "the map has no server");
  if (servers.size() > kMaxMapServers) {
    return Status(Code::kInvalidArgument, "at most 64 data servers");
  }
  std::set<std::string_view> ids;
  std::set<std::string_view> types;
  for (const auto& s : servers) {
    if (s.id.empty() || s.id.size() > kMaxIdBytes) {
      return Status(Code::kInvalidArgument, "server id '" + s.id + "': 1 to 29 bytes");
    }
    if (!ids.insert(s.id).second) {
      return Status(Code::kInvalidArgument, "server id '" + s.id + "' appears twice");
    }
    if (s.group.empty() || s.group.size() > 255 || s.listen.size() > 255 ||
        s.control.size() > 255 || s.listen.empty() || s.control.empty()) {
      return Status(Code::kInvalidArgument, "server '" + s.id +
                                                "': group, listen and control "
                                                "are 1 to 255 bytes");
    }
    if (s.types.empty() || s.types.size() > kMaxTypesPerServer) {
      return Status(Code::kInvalidArgument, "server '" + s.id + "': 1 to 64 types");
    }
    for (const auto& t : s.types) {
      if (t.empty() || t.size() > kMaxTypeBytes) {
        return Status(Code::kInvalidArgument, "type '" + t + "': 1 to 63 bytes");
      }
      if (!types.insert(t).second) {
        return Status(Code::kInvalidArgument, "type '" + t + "' has two owners");
      }
    }
  }
  for (const auto& s : servers) {
    if (group_of(s.group).size() < 2) {
      return Status(Code::kInvalidArgument,
                    "group '" + s.group + "' has one server: a failover group needs two or more");
    }
  }
  return Status::ok();
}

std::string server_key_name(std::string_view id) {
  return "c:" + std::string(id);
}
std::string master_key_name(std::string_view id) {
  return "m:" + std::string(id);
}

namespace {
constexpr std::byte kMagic[4] = {std::byte{'V'}, std::byte{'D'}, std::byte{'M'}, std::byte{'P'}};
constexpr std::uint8_t kMapVersion = 1;

void put_string(std::vector<std::byte>& out, std::string_view s) {
  out.push_back(static_cast<std::byte>(s.size()));
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}

struct Reader {
  std::span<const std::byte> bytes;
  std::size_t at = 0;
  bool ok = true;
  const std::byte* take(std::size_t n) {
    if (!ok || bytes.size() - at < n) {
      ok = false;
      return nullptr;
    }
    const std::byte* p = bytes.data() + at;
    at += n;
    return p;
  }
  std::string string() {
    const std::byte* len = take(1);
    if (len == nullptr) return {};
    std::size_t n = std::to_integer<std::size_t>(*len);
    const std::byte* p = take(n);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
  }
};
}  // namespace

std::vector<std::byte> encode_signed_map(const ClusterMap& map, const ClusterKey& key,
                                         std::string_view master_id) {
  std::vector<std::byte> out(16);
  std::memcpy(out.data(), kMagic, 4);
  out[4] = std::byte{kMapVersion};
  store_le<std::uint16_t>(out.data() + 6, static_cast<std::uint16_t>(map.servers.size()));
  store_le<std::uint64_t>(out.data() + 8, map.epoch);
  for (const auto& s : map.servers) {
    std::size_t at = out.size();
    out.resize(at + 44);
    out[at] = static_cast<std::byte>(s.state);
    out[at + 1] = static_cast<std::byte>(s.types.size());
    store_le<std::uint64_t>(out.data() + at + 4, s.generation);
    std::memcpy(out.data() + at + 12, s.key.data(), s.key.size());
    put_string(out, s.id);
    put_string(out, s.group);
    put_string(out, s.listen);
    put_string(out, s.control);
    for (const auto& t : s.types) put_string(out, t);
  }
  auto signature = key.sign(master_key_name(master_id), out);
  out.insert(out.end(), signature.begin(), signature.end());
  return out;
}

Result<ClusterMap> decode_signed_map(std::span<const std::byte> bytes,
                                     const failover::PublicKey& master_key) {
  if (bytes.size() < 16 + failover::kSignatureBytes || bytes.size() > kMaxMapBytes) {
    return Status(Code::kMalformed, "cluster map: bad length");
  }
  auto body = bytes.first(bytes.size() - failover::kSignatureBytes);
  if (!verify_signature(master_key, body, bytes.last(failover::kSignatureBytes))) {
    return Status(Code::kUnauthenticated, "cluster map: not signed by the master");
  }
  if (std::memcmp(body.data(), kMagic, 4) != 0 ||
      std::to_integer<std::uint8_t>(body[4]) != kMapVersion) {
    return Status(Code::kMalformed, "cluster map: bad magic or version");
  }
  ClusterMap map;
  std::size_t count = load_le<std::uint16_t>(body.data() + 6);
  map.epoch = load_le<std::uint64_t>(body.data() + 8);
  if (count > kMaxMapServers) return Status(Code::kMalformed, "cluster map: too many servers");
  Reader r{body, 16};
  for (std::size_t i = 0; i < count && r.ok; ++i) {
    MapServer s;
    const std::byte* h = r.take(44);
    if (h == nullptr) break;
    auto state = std::to_integer<std::uint8_t>(h[0]);
    if (state > 2) return Status(Code::kMalformed, "cluster map: bad server state");
    s.state = static_cast<ServerState>(state);
    std::size_t types = std::to_integer<std::size_t>(h[1]);
    s.generation = load_le<std::uint64_t>(h + 4);
    std::memcpy(s.key.data(), h + 12, s.key.size());
    s.id = r.string();
    s.group = r.string();
    s.listen = r.string();
    s.control = r.string();
    for (std::size_t t = 0; t < types && r.ok; ++t) s.types.push_back(r.string());
    map.servers.push_back(std::move(s));
  }
  if (!r.ok || r.at != body.size()) return Status(Code::kMalformed, "cluster map: truncated");
  if (auto s = map.check(); !s.is_ok()) {
    return Status(Code::kMalformed, "cluster map: " + s.message());
  }
  return map;
}

}  // namespace viaduct::cluster::cache
