// What both stores check before any SQL: sizes within the limits of record_store.hpp, so that a
// caller's mistake is kInvalidArgument naming the field, the same from either database.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "transport/status.hpp"

namespace viaduct::cluster::cache {

// type: 1..kMaxTypeBytes bytes and no NUL (PostgreSQL's TEXT cannot hold one); key:
// 1..kMaxKeyBytes bytes; value: at most kMaxValueBytes.
Status check_record(std::string_view type, std::span<const std::byte> key,
                    std::span<const std::byte> value = {});

}  // namespace viaduct::cluster::cache
