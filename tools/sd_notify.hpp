// systemd readiness (sd_notify(3)) without linking libsystemd: when systemd started this process
// with Type=notify it passes NOTIFY_SOCKET, a unix datagram socket that takes "READY=1",
// "STATUS=...", "STOPPING=1". Without NOTIFY_SOCKET every call does nothing.
#pragma once

#include <string_view>

namespace viaduct::tools {

// Sends `state` (newline-separated assignments); false if NOTIFY_SOCKET is set but the datagram
// could not be sent (the caller logs it; systemd then times the start out, which names it).
bool sd_notify(std::string_view state);

}  // namespace viaduct::tools
