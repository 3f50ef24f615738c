// Status and Result: the error vocabulary of viaduct.
//
// Codes follow VIA's VIP_RETURN values where one fits (VIP_TIMEOUT, VIP_REJECT, VIP_ERROR_RESOURCE,
// VIP_INVALID_PARAMETER, VIP_DESCRIPTOR_ERROR) plus the asynchronous CONN_LOST. No exceptions
// cross the hot path: every fallible call returns a Status or a Result<T>.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <viaduct/export.hpp>

namespace viaduct {

enum class Code : std::uint8_t {
  kOk = 0,
  kTimeout,          // a deadline passed (connect, accept, wait, call)
  kRejected,         // the peer refused the connection
  kConnLost,         // an established connection broke (see ConnLostCause)
  kInvalidArgument,  // the caller passed something unusable
  kMalformed,        // bytes from the wire did not decode
  kResource,         // out of descriptors, credits, memory, registrations
  kNotSupported,     // this back end or device cannot do it
  kNoDevice,         // no usable NIC / provider on this host
  kWouldBlock,       // nothing to do right now; try again
  kInternal,         // a provider call failed in a way we do not classify
  kUnauthenticated,  // a peer failed to prove who it is (bad MAC or signature, no key)
};

VIADUCT_API std::string_view code_name(Code code);

// Why a connection was declared lost; travels with kConnLost so that the failover layer can
// tell a crash (disconnect) from a hang (timeout) from a local fault.
enum class ConnLostCause : std::uint8_t {
  kNone = 0,
  kCompletionError,  // a work completion came back with an error status
  kDisconnected,     // CM / EQ reported the peer went away (FIN, DREQ, FI_SHUTDOWN)
  kUnreachable,      // CM reported the peer unreachable (route / retry exhausted)
  kEqShutdown,       // the event queue itself shut down
  kProtocolError,    // the peer sent a malformed frame; we closed the connection
  kKeepaliveMissed,  // heartbeats stopped arriving
  kLocalClose,       // this side closed the connection
};

VIADUCT_API std::string_view cause_name(ConnLostCause cause);

class [[nodiscard]] VIADUCT_API Status {
 public:
  Status() = default;
  Status(Code code, std::string message, ConnLostCause cause = ConnLostCause::kNone)
      : code_(code), cause_(cause), message_(std::move(message)) {}

  static Status ok() { return {}; }

  [[nodiscard]] bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  [[nodiscard]] Code code() const { return code_; }
  [[nodiscard]] ConnLostCause cause() const { return cause_; }
  [[nodiscard]] const std::string& message() const { return message_; }
  // "conn_lost (disconnected): peer closed" — for logs and error messages.
  [[nodiscard]] std::string to_string() const;
  // The same error, its message prefixed with what was being done: "connect to ADDRESS: ...".
  [[nodiscard]] Status with_context(const std::string& doing) const {
    return {code_, doing + ": " + message_, cause_};
  }

 private:
  Code code_ = Code::kOk;
  ConnLostCause cause_ = ConnLostCause::kNone;
  std::string message_;
};

// Result::value() on an error: prints the error and aborts (as absl::StatusOr does). Reading a
// value that is not there was undefined behaviour; a crash naming the error is what a caller
// needs to find the missing check. Out of line: the hot path keeps one predictable branch.
[[noreturn]] VIADUCT_API void die_on_missing_value(const Status& status);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool is_ok() const { return value_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  [[nodiscard]] const Status& status() const { return status_; }
  T& value() & { return checked(); }
  const T& value() const& { return checked(); }
  T&& value() && { return std::move(checked()); }
  T* operator->() { return &checked(); }
  T& operator*() { return checked(); }

 private:
  T& checked() {
    if (!value_) [[unlikely]]
      die_on_missing_value(status_);
    return *value_;
  }
  const T& checked() const {
    if (!value_) [[unlikely]]
      die_on_missing_value(status_);
    return *value_;
  }

  std::optional<T> value_;
  Status status_;
};

}  // namespace viaduct

// Early return on a failed Status; keeps unwinding code linear.
#define VIADUCT_RETURN_IF_ERROR(expr)      \
  do {                                     \
    ::viaduct::Status viaduct_s_ = (expr); \
    if (!viaduct_s_.is_ok()) {             \
      return viaduct_s_;                   \
    }                                      \
  } while (0)
