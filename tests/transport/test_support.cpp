#include "tests/transport/test_support.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>

namespace viaduct::testing {

ServerThread::ServerThread(const std::string& uri, transport::RequestHandler* handler,
                           transport::ChannelServerOptions options) {
  auto address = transport::Address::parse(uri);
  if (!address) {
    status_ = address.status();
    return;
  }
  auto domain = transport::Domain::open(address.value());
  if (!domain) {
    status_ = domain.status();
    return;
  }
  domain_ = std::move(domain.value());
  options.on_channel_closed = [this](const Status& why) {
    {
      std::lock_guard lock(close_mutex_);
      last_close_reason_ = why;
    }
    ++closed_channels;
  };
  auto server = transport::ChannelServer::listen(*domain_, address.value(), handler, options);
  if (!server) {
    status_ = server.status();
    return;
  }
  server_ = std::move(server.value());
  address_ = server_->address();
  thread_ = std::thread([this] { server_->run(stop_); });
}

ServerThread::~ServerThread() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

Status ServerThread::last_close_reason() const {
  std::lock_guard lock(close_mutex_);
  return last_close_reason_;
}

RawPeer::~RawPeer() {
  vi_.reset();
  exposed_mr_.reset();
  if (exposed_ != nullptr) munmap(exposed_, exposed_bytes_);
}

Status RawPeer::prepare(transport::Domain& domain, std::uint16_t recv_slots,
                        std::size_t exposed_bytes) {
  using transport::Access;
  recv_slots_ = recv_slots;
  slot_bytes_ = 64 * 1024;
  recv_buf_.resize(slot_bytes_ * recv_slots);
  send_buf_.resize(slot_bytes_);
  void* m =
      mmap(nullptr, exposed_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return {Code::kResource, "mmap"};
  exposed_ = static_cast<std::byte*>(m);
  exposed_bytes_ = exposed_bytes;
  auto r = domain.register_memory(recv_buf_.data(), recv_buf_.size(), Access::kLocal);
  if (!r) return r.status();
  recv_mr_ = std::move(r.value());
  auto s = domain.register_memory(send_buf_.data(), send_buf_.size(), Access::kLocal);
  if (!s) return s.status();
  send_mr_ = std::move(s.value());
  auto e = domain.register_memory(exposed_, exposed_bytes_, Access::kRemoteRead);
  if (!e) return e.status();
  exposed_mr_ = std::move(e.value());
  return Status::ok();
}

namespace {
transport::ViOptions raw_vi_options(std::vector<std::byte>& buf, transport::MemoryRegion& mr,
                                    std::uint16_t slots, std::size_t slot_bytes) {
  transport::ViOptions vo;
  vo.before_connect = [&buf, &mr, slots, slot_bytes](transport::VirtualInterface& vi) {
    for (std::uint16_t i = 0; i < slots; ++i) {
      auto d =
          transport::Descriptor::single(transport::Opcode::kRecv, i, buf.data() + i * slot_bytes,
                                        static_cast<std::uint32_t>(slot_bytes), &mr);
      VIADUCT_RETURN_IF_ERROR(vi.post_recv({&d, 1}, nullptr));
    }
    return Status::ok();
  };
  return vo;
}
}  // namespace

std::unique_ptr<RawPeer> RawPeer::connect(transport::Domain& domain,
                                          const transport::Address& server,
                                          std::uint16_t recv_slots, std::uint32_t eager_threshold,
                                          std::size_t exposed_bytes) {
  std::unique_ptr<RawPeer> peer(new RawPeer());
  if (!peer->prepare(domain, recv_slots, exposed_bytes)) return nullptr;
  std::byte hello[transport::kMaxPrivateData];
  std::size_t n = transport::encode_hello({recv_slots, eager_threshold, {}}, hello);
  auto vo = raw_vi_options(peer->recv_buf_, *peer->recv_mr_, recv_slots, peer->slot_bytes_);
  auto vi = domain.connect(server, {hello, n}, vo, 5000, nullptr);
  if (!vi) return nullptr;
  peer->vi_ = std::move(vi.value());
  return peer;
}

std::unique_ptr<RawPeer> RawPeer::accept(transport::Domain& domain, transport::Listener& listener,
                                         std::uint16_t recv_slots, std::uint32_t eager_threshold) {
  std::unique_ptr<RawPeer> peer(new RawPeer());
  if (!peer->prepare(domain, recv_slots, 1 << 20)) return nullptr;
  auto request = listener.get_request(5000);
  if (!request) return nullptr;
  std::byte hello[transport::kMaxPrivateData];
  std::size_t n = transport::encode_hello({recv_slots, eager_threshold, {}}, hello);
  auto vo = raw_vi_options(peer->recv_buf_, *peer->recv_mr_, recv_slots, peer->slot_bytes_);
  auto vi = request.value()->accept({hello, n}, vo, 5000);
  if (!vi) return nullptr;
  peer->vi_ = std::move(vi.value());
  return peer;
}

std::vector<std::byte> RawPeer::frame(transport::FrameHeader h, std::span<const std::byte> body) {
  std::vector<std::byte> f(transport::kFrameHeaderBytes + body.size());
  h.payload_len = static_cast<std::uint32_t>(body.size());
  transport::encode_header(h, f.data());
  if (!body.empty()) std::memcpy(f.data() + transport::kFrameHeaderBytes, body.data(), body.size());
  return f;
}

std::vector<std::byte> RawPeer::rendezvous_frame(transport::FrameType type,
                                                 std::uint64_t request_id,
                                                 std::uint64_t length) const {
  std::byte ref[transport::kRendezvousRefBytes];
  transport::RemoteSegment seg = exposed_segment();
  transport::encode_rendezvous({seg.addr, seg.key, length}, ref);
  return frame({type, 0, transport::kFlagRendezvous, 0, 0, request_id}, ref);
}

Status RawPeer::send(std::span<const std::byte> frame) {
  std::memcpy(send_buf_.data(), frame.data(), frame.size());
  auto d = transport::Descriptor::single(transport::Opcode::kSend, 1000, send_buf_.data(),
                                         static_cast<std::uint32_t>(frame.size()), send_mr_.get());
  VIADUCT_RETURN_IF_ERROR(vi_->post_send({&d, 1}, nullptr));
  // Wait for the send to complete so the buffer may be reused at once.
  std::array<transport::Completion, 8> c;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    std::size_t n = vi_->cq().poll(c);
    for (std::size_t i = 0; i < n; ++i) {
      if (c[i].context == 1000) return Status::ok();
    }
    if (vi_->state() != transport::ViState::kConnected) return vi_->error();
  }
  return {Code::kTimeout, "raw send did not complete"};
}

bool RawPeer::wait_down(int timeout_ms) {
  std::array<transport::Completion, 8> c;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (vi_->state() == transport::ViState::kConnected &&
         std::chrono::steady_clock::now() < deadline) {
    vi_->cq().poll(c);
    (void)vi_->cq().wait(10);
  }
  return vi_->state() != transport::ViState::kConnected;
}

ServerProcess::ServerProcess(const std::string& listen_uri) {
  int out[2];
  if (pipe(out) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    execl(VIADUCT_TOOL, VIADUCT_TOOL, "perf", "server", "--listen", listen_uri.c_str(), nullptr);
    _exit(127);
  }
  close(out[1]);
  // First line: "listening URI".
  FILE* f = fdopen(out[0], "r");
  char line[256] = {};
  if (f != nullptr && fgets(line, sizeof(line), f) != nullptr) {
    std::string s(line);
    auto sp = s.find(' ');
    if (sp != std::string::npos) uri_ = s.substr(sp + 1, s.find_last_not_of("\r\n") - sp);
  }
  if (f != nullptr) fclose(f);
}

ServerProcess::~ServerProcess() {
  kill_hard();
}

void ServerProcess::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void ServerProcess::freeze() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void ReverseHandler::on_request(transport::Channel& channel, const transport::IncomingRequest& r) {
  if (delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
  if (buffer_.size() < r.payload.size()) buffer_.resize(r.payload.size());
  std::reverse_copy(r.payload.begin(), r.payload.end(), buffer_.begin());
  // Counted before the answer leaves: a client that has its last answer and then reads the count
  // must see it (counted after, the 100,000-request test read 99,999).
  ++served;
  (void)channel.respond(r.request_id, std::span(buffer_.data(), r.payload.size()));
}

}  // namespace viaduct::testing
