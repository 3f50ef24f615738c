#include "transport/status.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>

namespace viaduct {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kTimeout:
      return "timeout";
    case Code::kRejected:
      return "rejected";
    case Code::kConnLost:
      return "conn_lost";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kMalformed:
      return "malformed";
    case Code::kResource:
      return "resource";
    case Code::kNotSupported:
      return "not_supported";
    case Code::kNoDevice:
      return "no_device";
    case Code::kWouldBlock:
      return "would_block";
    case Code::kInternal:
      return "internal";
    case Code::kUnauthenticated:
      return "unauthenticated";
  }
  return "unknown";
}

std::string_view cause_name(ConnLostCause cause) {
  switch (cause) {
    case ConnLostCause::kNone:
      return "none";
    case ConnLostCause::kCompletionError:
      return "completion_error";
    case ConnLostCause::kDisconnected:
      return "disconnected";
    case ConnLostCause::kUnreachable:
      return "unreachable";
    case ConnLostCause::kEqShutdown:
      return "eq_shutdown";
    case ConnLostCause::kProtocolError:
      return "protocol_error";
    case ConnLostCause::kKeepaliveMissed:
      return "keepalive_missed";
    case ConnLostCause::kLocalClose:
      return "local_close";
  }
  return "unknown";
}

std::string Status::to_string() const {
  std::string s(code_name(code_));
  if (code_ == Code::kConnLost) {
    s += " (";
    s += cause_name(cause_);
    s += ")";
  }
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

void die_on_missing_value(const Status& status) {
  std::fprintf(stderr, "viaduct: Result::value() called on an error: %s\n",
               status.is_ok() ? "no value (an OK status without one)" : status.to_string().c_str());
  std::fflush(stderr);
  // A plain abort, not whatever a library installed for SIGABRT: libinfinipath (loaded with
  // libfabric's psm provider) runs dynamic-loader code from its handler, which is not
  // async-signal-safe (TSan reports it) and may turn the crash into an exit status.
  std::signal(SIGABRT, SIG_DFL);
  std::abort();
}

}  // namespace viaduct
