#include "transport/verbs/verbs_cm.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "transport/tunables.hpp"

namespace viaduct::transport::verbs {

std::string errno_text(const char* call, int error_number) {
  return std::string(call) + ": " + std::strerror(error_number);
}
std::string errno_text(const char* call) {
  return errno_text(call, errno);
}

int Deadline::remaining_ms() const {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(end_ - std::chrono::steady_clock::now())
          .count();
  return left <= 0 ? 0 : static_cast<int>(std::max<long long>(left, 1));
}

Result<SocketAddress> resolve_host(const Address& address, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  std::string host = address.host;
  if (!host.empty() && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const bool any = host.empty() || host == "*";
  addrinfo* found = nullptr;
  std::string port = address.port_string();
  int rc = getaddrinfo(any ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return Status(Code::kInvalidArgument,
                  "cannot resolve '" + address.host + "': " + gai_strerror(rc));
  }
  SocketAddress out;
  std::memcpy(&out.storage, found->ai_addr, found->ai_addrlen);
  out.length = found->ai_addrlen;
  freeaddrinfo(found);
  return out;
}

Result<EventChannelPtr> make_event_channel() {
  EventChannelPtr channel(rdma_create_event_channel());
  if (!channel) {
    int e = errno;
    Code code = (e == ENODEV || e == ENOSYS || e == ENOENT) ? Code::kNoDevice : Code::kInternal;
    return Status(code, (code == Code::kNoDevice ? "no RDMA device: " : "") +
                            errno_text("rdma_create_event_channel", e));
  }
  int flags = fcntl(channel->fd, F_GETFL);
  if (flags < 0 || fcntl(channel->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return Status(Code::kInternal, errno_text("fcntl(O_NONBLOCK) on the rdma_cm channel"));
  }
  return channel;
}

Result<CmIdPtr> make_cm_id(rdma_event_channel* channel) {
  rdma_cm_id* id = nullptr;
  if (rdma_create_id(channel, &id, nullptr, RDMA_PS_TCP) != 0) {
    return Status(Code::kInternal, errno_text("rdma_create_id"));
  }
  return CmIdPtr(id);
}

Status take_cm_event(rdma_event_channel* channel, CmEvent* event) {
  rdma_cm_event* raw = nullptr;
  if (rdma_get_cm_event(channel, &raw) != 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      return Status(Code::kWouldBlock, "no rdma_cm event");
    }
    return Status(Code::kInternal, errno_text("rdma_get_cm_event"));
  }
  event->type = raw->event;
  event->status = raw->status;
  event->id = raw->id;
  event->private_data.clear();
  // Only these events carry conn params; for the others the union holds UD data.
  if (raw->event == RDMA_CM_EVENT_CONNECT_REQUEST || raw->event == RDMA_CM_EVENT_ESTABLISHED ||
      raw->event == RDMA_CM_EVENT_REJECTED || raw->event == RDMA_CM_EVENT_CONNECT_RESPONSE) {
    const auto* data = static_cast<const std::byte*>(raw->param.conn.private_data);
    if (data != nullptr) {
      event->private_data.assign(data, data + raw->param.conn.private_data_len);
    }
  }
  rdma_ack_cm_event(raw);
  return Status::ok();
}

Status wait_cm_event(rdma_event_channel* channel, const Deadline& deadline, CmEvent* event) {
  for (;;) {
    Status taken = take_cm_event(channel, event);
    if (taken.code() != Code::kWouldBlock) return taken;
    int left = deadline.remaining_ms();
    if (left == 0) return Status(Code::kTimeout, "no rdma_cm event before the deadline");
    pollfd pfd{channel->fd, POLLIN, 0};
    if (poll(&pfd, 1, left) < 0 && errno != EINTR) {
      return Status(Code::kInternal, errno_text("poll on the rdma_cm channel"));
    }
  }
}

Status expect_cm_event(rdma_event_channel* channel, const Deadline& deadline,
                       rdma_cm_event_type expected, const char* step) {
  CmEvent event;
  Status s = wait_cm_event(channel, deadline, &event);
  if (s.code() == Code::kTimeout) return Status(Code::kTimeout, std::string(step) + " timed out");
  VIADUCT_RETURN_IF_ERROR(s);
  if (event.type == expected) return Status::ok();
  // rdma_cm reports its own timeouts as -ETIMEDOUT in the event status.
  Code code = event.status == -ETIMEDOUT ? Code::kTimeout : Code::kInternal;
  return Status(code, std::string(step) + " failed: " + rdma_event_str(event.type) + " (status " +
                          std::to_string(event.status) + ")");
}

std::vector<std::byte> frame_private_data(std::span<const std::byte> data) {
  std::vector<std::byte> framed;
  framed.reserve(data.size() + 1);
  framed.push_back(static_cast<std::byte>(data.size()));
  framed.insert(framed.end(), data.begin(), data.end());
  return framed;
}

std::vector<std::byte> unframe_private_data(std::span<const std::byte> framed) {
  if (framed.empty()) return {};
  auto length = static_cast<std::size_t>(framed[0]);
  length = std::min(length, framed.size() - 1);
  return {framed.begin() + 1, framed.begin() + 1 + static_cast<std::ptrdiff_t>(length)};
}

Status set_ack_timeout(rdma_cm_id* id) {
  auto exponent = static_cast<std::uint8_t>(tunables::verbs_ack_timeout_exponent.get());
  // Level RDMA_OPTION_ID: RDMA_OPTION_IB returns ENOSYS for this option.
  if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &exponent,
                      sizeof(exponent)) != 0) {
    return Status(Code::kInternal, errno_text("rdma_set_option(RDMA_OPTION_ID_ACK_TIMEOUT)"));
  }
  return Status::ok();
}

}  // namespace viaduct::transport::verbs
