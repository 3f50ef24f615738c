// A replicated key-value store: the Service both kv_server instances run. The active executes
// puts and gets; the passive applies each put it is sent (apply_replica) and starts from the
// active's whole map when it (re)joins (snapshot / restore).
//
// Request: one byte 'P' (put) or 'G' (get), a u16 key length, the key, then (put) the value.
// Answer: a put answers nothing; a get answers the value, or status kNotFound.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <viaduct/service.hpp>

namespace kv {

constexpr std::uint32_t kOk = 0;
constexpr std::uint32_t kNotFound = 1;
constexpr std::uint32_t kBadRequest = 2;

// Builds a request (the client's side).
inline std::vector<std::byte> encode(char op, const std::string& key,
                                     const std::string& value = {}) {
  std::vector<std::byte> out(3 + key.size() + value.size());
  out[0] = static_cast<std::byte>(op);
  auto key_length = static_cast<std::uint16_t>(key.size());
  std::memcpy(out.data() + 1, &key_length, 2);
  std::memcpy(out.data() + 3, key.data(), key.size());
  std::memcpy(out.data() + 3 + key.size(), value.data(), value.size());
  return out;
}

class Store final : public viaduct::Service {
 public:
  std::uint32_t handle(std::span<const std::byte> request,
                       std::vector<std::byte>& response) override {
    char op = 0;
    std::string key, value;
    if (!decode(request, &op, &key, &value)) return kBadRequest;
    if (op == 'P') {
      map_[key] = value;
      return kOk;
    }
    auto it = map_.find(key);
    if (it == map_.end()) return kNotFound;
    auto bytes = std::as_bytes(std::span(it->second));
    response.assign(bytes.begin(), bytes.end());
    return kOk;
  }

  void apply_replica(std::span<const std::byte> request,
                     std::span<const std::byte> /*response*/) override {
    char op = 0;
    std::string key, value;
    if (decode(request, &op, &key, &value) && op == 'P') map_[key] = value;
  }

  // The whole map: for each entry a u16 key length, a u32 value length, the key, the value.
  void snapshot(std::vector<std::byte>& state) override {
    state.clear();
    for (const auto& [key, value] : map_) {
      auto key_length = static_cast<std::uint16_t>(key.size());
      auto value_length = static_cast<std::uint32_t>(value.size());
      append(state, &key_length, 2);
      append(state, &value_length, 4);
      append(state, key.data(), key.size());
      append(state, value.data(), value.size());
    }
  }

  void restore(std::span<const std::byte> state) override {
    std::map<std::string, std::string> map;
    std::size_t at = 0;
    while (at < state.size()) {
      std::uint16_t key_length = 0;
      std::uint32_t value_length = 0;
      if (state.size() - at < 6) return;  // truncated: keep what we had
      std::memcpy(&key_length, state.data() + at, 2);
      std::memcpy(&value_length, state.data() + at + 2, 4);
      at += 6;
      if (state.size() - at < std::size_t{key_length} + value_length) return;
      const char* text = reinterpret_cast<const char*>(state.data() + at);
      map.emplace(std::string(text, key_length), std::string(text + key_length, value_length));
      at += std::size_t{key_length} + value_length;
    }
    map_ = std::move(map);
  }

  [[nodiscard]] std::size_t size() const { return map_.size(); }

 private:
  static bool decode(std::span<const std::byte> request, char* op, std::string* key,
                     std::string* value) {
    if (request.size() < 3) return false;
    *op = static_cast<char>(request[0]);
    std::uint16_t key_length = 0;
    std::memcpy(&key_length, request.data() + 1, 2);
    if (request.size() < 3u + key_length || (*op != 'P' && *op != 'G')) return false;
    const char* text = reinterpret_cast<const char*>(request.data() + 3);
    key->assign(text, key_length);
    value->assign(text + key_length, request.size() - 3 - key_length);
    return true;
  }
  static void append(std::vector<std::byte>& out, const void* data, std::size_t n) {
    const auto* bytes = static_cast<const std::byte*>(data);
    out.insert(out.end(), bytes, bytes + n);
  }

  std::map<std::string, std::string> map_;
};

}  // namespace kv
