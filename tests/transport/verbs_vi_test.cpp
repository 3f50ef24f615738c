// The verbs back end against a real RDMA device (Soft-RoCE in tests/rxe's guest). Every test
// skips, saying so, when this host has no RDMA device.
//
// Environment:
//   VIADUCT_TEST_VERBS_HOST         server address (default 10.77.0.1: guest-rxe-up.sh dummy)
//   VIADUCT_TEST_VERBS_CLIENT_HOST  address whose device the client uses (default: the server's)
//   VIADUCT_TEST_VERBS_SILENT_HOST  an address on the device's subnet where nobody answers
//                                   (default 10.77.0.2; empty skips that test)
//   VIADUCT_TEST_VERBS_NETEM_DEV    netdev of the server's side of a wire that tc netem may cut
//                                   (guest-rxe-up.sh pair: va); empty skips that test
//   VIADUCT_TEST_VERBS_SERVER_DEV   netdevs of the server's and the client's side of that wire,
//   VIADUCT_TEST_VERBS_CLIENT_DEV   which the link-down tests set down (pair: va, vb); empty skips
//   VIADUCT_TEST_VERBS_REWIRE       shell command the link-down tests run first, before any verbs
//                                   call, to get fresh rxe devices (pair: guest-rxe-up.sh
//                                   pair-rewire): a link down breaks the device's CM for good
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "transport/domain.hpp"
#include "transport/verbs/verbs_domain.hpp"

namespace viaduct::transport {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kConnectTimeoutMs = 10000;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}
std::string server_host() {
  return env_or("VIADUCT_TEST_VERBS_HOST", "10.77.0.1");
}
std::string client_host() {
  return env_or("VIADUCT_TEST_VERBS_CLIENT_HOST", server_host().c_str());
}

bool have_rdma_device() {
  static const bool usable = verbs::probe().usable;
  return usable;
}

#define SKIP_WITHOUT_RDMA_DEVICE()                                      \
  do {                                                                  \
    if (!have_rdma_device()) GTEST_SKIP() << "skipped: no RDMA device"; \
  } while (0)

std::vector<std::byte> bytes_of(std::string_view text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}
std::string text_of(std::span<const std::byte> data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

std::unique_ptr<Domain> open_or_die(const std::string& host) {
  auto domain = verbs::open_domain(Address{BackendKind::kVerbs, host, 0});
  EXPECT_TRUE(domain) << domain.status().to_string();
  return domain ? std::move(domain.value()) : nullptr;
}

// Polls (blocking in wait()) until one reported completion arrives or the time is up.
std::optional<Completion> next_completion(VirtualInterface& vi, int timeout_ms) {
  auto start = Clock::now();
  Completion c;
  for (;;) {
    if (vi.cq().poll({&c, 1}) == 1) return c;
    double left = timeout_ms - ms_since(start);
    if (left <= 0) return std::nullopt;
    (void)vi.cq().wait(static_cast<int>(left) + 1);
  }
}

// Waits until the VI leaves kConnected (kConnLost reported), or the time is up.
bool wait_for_error(VirtualInterface& vi, int timeout_ms) {
  auto start = Clock::now();
  std::array<Completion, 16> sink;
  while (vi.state() == ViState::kConnected) {
    vi.cq().poll(sink);
    if (vi.state() != ViState::kConnected) break;
    if (ms_since(start) > timeout_ms) return false;
    (void)vi.cq().wait(20);
  }
  return true;
}

struct Connection {
  std::unique_ptr<Domain> server_domain;
  std::unique_ptr<Domain> client_domain;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<VirtualInterface> server;
  std::unique_ptr<VirtualInterface> client;
  std::vector<std::byte> request_data;  // what the server saw in the connect request
};

// Opens both domains, then connects (this thread) while accepting on a second thread.
void connect_pair(Connection& c, std::span<const std::byte> request,
                  std::span<const std::byte> reply, const ViOptions& server_options = {},
                  const ViOptions& client_options = {}) {
  c.server_domain = open_or_die(server_host());
  c.client_domain = open_or_die(client_host());
  ASSERT_TRUE(c.server_domain && c.client_domain);
  auto listener = c.server_domain->listen(Address{BackendKind::kVerbs, server_host(), 0});
  ASSERT_TRUE(listener) << listener.status().to_string();
  c.listener = std::move(listener.value());
  ASSERT_NE(c.listener->address().port, 0);

  Status server_status;
  std::thread server([&] {
    auto req = c.listener->get_request(kConnectTimeoutMs);
    if (!req) {
      server_status = req.status();
      return;
    }
    auto data = (*req)->private_data();
    c.request_data.assign(data.begin(), data.end());
    auto vi = (*req)->accept(reply, server_options, kConnectTimeoutMs);
    if (!vi) {
      server_status = vi.status();
      return;
    }
    c.server = std::move(vi.value());
  });
  auto vi = c.client_domain->connect(c.listener->address(), request, client_options,
                                     kConnectTimeoutMs, nullptr);
  server.join();
  ASSERT_TRUE(vi) << vi.status().to_string();
  ASSERT_TRUE(server_status.is_ok()) << server_status.to_string();
  c.client = std::move(vi.value());
  ASSERT_EQ(c.client->state(), ViState::kConnected);
  ASSERT_EQ(c.server->state(), ViState::kConnected);
}

// Posts receives for every slot of `buffer` (slot_size each) with context = slot index.
ViOptions prepost_receives(std::vector<std::byte>& buffer, const MemoryRegion*& region,
                           std::size_t slot_size) {
  ViOptions options;
  options.before_connect = [&buffer, &region, slot_size](VirtualInterface& vi) {
    std::vector<Descriptor> descs;
    for (std::size_t i = 0; i < buffer.size() / slot_size; ++i) {
      descs.push_back(Descriptor::single(Opcode::kRecv, i, buffer.data() + i * slot_size,
                                         static_cast<std::uint32_t>(slot_size), region));
    }
    std::size_t bad = 0;
    return vi.post_recv(descs, &bad);
  };
  return options;
}

std::uint64_t checksum(std::span<const std::byte> data) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a, 8 bytes at a time to stay quick under TCG
  const std::size_t words = data.size() / 8;
  for (std::size_t i = 0; i < words; ++i) {
    std::uint64_t w;
    std::memcpy(&w, data.data() + i * 8, 8);
    h = (h ^ w) * 1099511628211ULL;
  }
  return h;
}

// ---- connection management

TEST(VerbsVi, ConnectWithPrivateData_PeerSeesIt) {
  SKIP_WITHOUT_RDMA_DEVICE();
  Connection c;
  auto request = bytes_of("hello from the client");
  auto reply = bytes_of("welcome");
  ASSERT_NO_FATAL_FAILURE(connect_pair(c, request, reply));
  // IB CM pads the request to kMaxPrivateData; the caller's own bytes come first.
  ASSERT_GE(c.request_data.size(), request.size());
  EXPECT_LE(c.request_data.size(), kMaxPrivateData);
  EXPECT_EQ(text_of(std::span(c.request_data).first(request.size())), "hello from the client");
  EXPECT_EQ(text_of(c.server->peer_private_data().first(request.size())), "hello from the client");
  // The accept reply arrives with its exact length.
  EXPECT_EQ(text_of(c.client->peer_private_data()), "welcome");
}

TEST(VerbsVi, ConnectWithFullPrivateData_AllBytesArrive) {
  SKIP_WITHOUT_RDMA_DEVICE();
  Connection c;
  std::vector<std::byte> request(kMaxPrivateData);
  std::vector<std::byte> reply(kMaxPrivateData);
  for (std::size_t i = 0; i < kMaxPrivateData; ++i) {
    request[i] = static_cast<std::byte>(i + 1);
    reply[i] = static_cast<std::byte>(200 - i);
  }
  ASSERT_NO_FATAL_FAILURE(connect_pair(c, request, reply));
  ASSERT_EQ(c.request_data.size(), kMaxPrivateData);
  EXPECT_EQ(c.request_data, request);
  auto seen = c.client->peer_private_data();
  EXPECT_EQ(std::vector<std::byte>(seen.begin(), seen.end()), reply);
}

TEST(VerbsVi, RejectWithReason_ConnectorGetsRejectedAndReason) {
  SKIP_WITHOUT_RDMA_DEVICE();
  auto server_domain = open_or_die(server_host());
  auto client_domain = open_or_die(client_host());
  ASSERT_TRUE(server_domain && client_domain);
  auto listener = server_domain->listen(Address{BackendKind::kVerbs, server_host(), 0});
  ASSERT_TRUE(listener) << listener.status().to_string();
  Status reject_status;
  std::thread server([&] {
    auto req = (*listener)->get_request(kConnectTimeoutMs);
    if (!req) {
      reject_status = req.status();
      return;
    }
    reject_status = (*req)->reject(bytes_of("server full"));
  });
  std::vector<std::byte> reason;
  auto vi = client_domain->connect((*listener)->address(), bytes_of("let me in"), {},
                                   kConnectTimeoutMs, &reason);
  server.join();
  ASSERT_TRUE(reject_status.is_ok()) << reject_status.to_string();
  ASSERT_FALSE(vi);
  EXPECT_EQ(vi.status().code(), Code::kRejected) << vi.status().to_string();
  EXPECT_EQ(text_of(reason), "server full");
}

TEST(VerbsVi, ConnectToPortNobodyListensOn_FailsWithinTimeout) {
  SKIP_WITHOUT_RDMA_DEVICE();
  auto server_domain = open_or_die(server_host());
  auto client_domain = open_or_die(client_host());
  ASSERT_TRUE(server_domain && client_domain);
  Address unused{BackendKind::kVerbs, server_host(), 0};
  {
    auto listener = server_domain->listen(unused);
    ASSERT_TRUE(listener);
    unused = (*listener)->address();
  }  // closed: nobody listens on that port any more
  constexpr int kTimeoutMs = 3000;
  auto start = Clock::now();
  auto vi = client_domain->connect(unused, {}, {}, kTimeoutMs, nullptr);
  double elapsed = ms_since(start);
  ASSERT_FALSE(vi);
  // IB CM answers a REQ for an unbound service id with a REJ (refused) rather than silence.
  EXPECT_TRUE(vi.status().code() == Code::kRejected || vi.status().code() == Code::kTimeout)
      << vi.status().to_string();
  EXPECT_LT(elapsed, kTimeoutMs + 1500.0);
  std::printf("[ measure  ] connect to unused port: %s after %.1f ms\n",
              vi.status().to_string().c_str(), elapsed);
}

TEST(VerbsVi, ConnectToSilentAddress_TimesOut) {
  SKIP_WITHOUT_RDMA_DEVICE();
  const std::string silent = env_or("VIADUCT_TEST_VERBS_SILENT_HOST", "10.77.0.2");
  if (silent.empty()) GTEST_SKIP() << "skipped: VIADUCT_TEST_VERBS_SILENT_HOST is empty";
  auto domain = open_or_die(server_host());
  ASSERT_TRUE(domain);
  constexpr int kTimeoutMs = 1500;
  auto start = Clock::now();
  auto vi =
      domain->connect(Address{BackendKind::kVerbs, silent, 7471}, {}, {}, kTimeoutMs, nullptr);
  double elapsed = ms_since(start);
  ASSERT_FALSE(vi);
  EXPECT_EQ(vi.status().code(), Code::kTimeout) << vi.status().to_string();
  EXPECT_GE(elapsed, kTimeoutMs - 50.0);
  EXPECT_LT(elapsed, kTimeoutMs + 1500.0);
}

TEST(VerbsVi, CloseByClient_ServerSeesDisconnect) {
  SKIP_WITHOUT_RDMA_DEVICE();
  Connection c;
  ASSERT_NO_FATAL_FAILURE(connect_pair(c, {}, {}));
  c.client->close();
  EXPECT_EQ(c.client->state(), ViState::kClosed);
  c.client->close();  // idempotent
  ASSERT_TRUE(wait_for_error(*c.server, 5000));
  EXPECT_EQ(c.server->state(), ViState::kError);
  EXPECT_EQ(c.server->error().code(), Code::kConnLost);
  EXPECT_EQ(c.server->error().cause(), ConnLostCause::kDisconnected)
      << c.server->error().to_string();
}

TEST(VerbsVi, AbortFromAbove_ReasonKeptAndPeerSeesDisconnect) {
  SKIP_WITHOUT_RDMA_DEVICE();
  Connection c;
  ASSERT_NO_FATAL_FAILURE(connect_pair(c, {}, {}));
  c.server->abort(Status(Code::kConnLost, "heartbeats missed", ConnLostCause::kKeepaliveMissed));
  EXPECT_EQ(c.server->state(), ViState::kError);
  EXPECT_EQ(c.server->error().cause(), ConnLostCause::kKeepaliveMissed);
  ASSERT_TRUE(wait_for_error(*c.client, 5000));
  EXPECT_EQ(c.client->error().cause(), ConnLostCause::kDisconnected);
  std::size_t bad = 99;
  std::byte byte{};
  Descriptor d = Descriptor::single(Opcode::kSend, 1, &byte, 1, nullptr);
  d.inline_data = true;
  EXPECT_EQ(c.server->post_send({&d, 1}, &bad).code(), Code::kConnLost);
}

TEST(VerbsVi, WaitWithoutTraffic_TimesOut) {
  SKIP_WITHOUT_RDMA_DEVICE();
  Connection c;
  ASSERT_NO_FATAL_FAILURE(connect_pair(c, {}, {}));
  auto start = Clock::now();
  Status s = c.client->cq().wait(200);
  EXPECT_EQ(s.code(), Code::kTimeout) << s.to_string();
  EXPECT_GE(ms_since(start), 150.0);
  EXPECT_GE(c.client->cq().wait_fd(), 0);
}

// ---- data transfer

TEST(VerbsVi, SendRecv_ContentArrivesIntact) {
  SKIP_WITHOUT_RDMA_DEVICE();
  constexpr std::size_t kSlot = 4096;
  constexpr std::size_t kSlots = 16;
  std::vector<std::byte> recv_buffer(kSlot * kSlots);
  const MemoryRegion* recv_region = nullptr;
  Connection c;
  auto server_options = prepost_receives(recv_buffer, recv_region, kSlot);
  // The receive region must exist before accept runs before_connect: register on a domain
  // opened up front.
  auto server_domain = open_or_die(server_host());
  ASSERT_TRUE(server_domain);
  auto recv_mr =
      server_domain->register_memory(recv_buffer.data(), recv_buffer.size(), Access::kLocal);
  ASSERT_TRUE(recv_mr) << recv_mr.status().to_string();
  recv_region = recv_mr->get();
  {
    // connect_pair opens its own domains; use this one for the server.
    c.server_domain = std::move(server_domain);
    c.client_domain = open_or_die(client_host());
    auto listener = c.server_domain->listen(Address{BackendKind::kVerbs, server_host(), 0});
    ASSERT_TRUE(listener);
    c.listener = std::move(listener.value());
    std::thread server([&] {
      auto req = c.listener->get_request(kConnectTimeoutMs);
      if (!req) return;
      auto vi = (*req)->accept({}, server_options, kConnectTimeoutMs);
      if (vi) c.server = std::move(vi.value());
    });
    auto vi = c.client_domain->connect(c.listener->address(), {}, {}, kConnectTimeoutMs, nullptr);
    server.join();
    ASSERT_TRUE(vi) << vi.status().to_string();
    ASSERT_TRUE(c.server);
    c.client = std::move(vi.value());
  }

  std::vector<std::byte> send_buffer(kSlot * 4);
  for (std::size_t i = 0; i < send_buffer.size(); ++i)
    send_buffer[i] = static_cast<std::byte>(i * 7 + 3);
  auto send_mr =
      c.client_domain->register_memory(send_buffer.data(), send_buffer.size(), Access::kLocal);
  ASSERT_TRUE(send_mr);
  const MemoryRegion* send_region = send_mr->get();

  // Three sends: 1 byte, a full slot, and a two-segment gather.
  std::array<Descriptor, 3> sends;
  sends[0] = Descriptor::single(Opcode::kSend, 100, send_buffer.data(), 1, send_region);
  sends[1] = Descriptor::single(Opcode::kSend, 101, send_buffer.data() + kSlot, kSlot, send_region);
  sends[2] =
      Descriptor::single(Opcode::kSend, 102, send_buffer.data() + 2 * kSlot, 100, send_region);
  sends[2].segments[1] = {send_buffer.data() + 3 * kSlot, 200, send_region};
  sends[2].segment_count = 2;
  std::size_t bad = 99;
  ASSERT_TRUE(c.client->post_send(sends, &bad).is_ok());

  std::vector<std::uint64_t> send_contexts;
  for (int i = 0; i < 3; ++i) {
    auto done = next_completion(*c.client, 5000);
    ASSERT_TRUE(done);
    EXPECT_EQ(done->status, CompletionStatus::kSuccess) << done->provider_error;
    EXPECT_EQ(done->opcode, Opcode::kSend);
    send_contexts.push_back(done->context);
  }
  EXPECT_EQ(send_contexts, (std::vector<std::uint64_t>{100, 101, 102}));

  const std::array<std::uint32_t, 3> expected_lengths{1, kSlot, 300};
  for (std::size_t i = 0; i < 3; ++i) {
    auto got = next_completion(*c.server, 5000);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, CompletionStatus::kSuccess);
    EXPECT_EQ(got->opcode, Opcode::kRecv);
    EXPECT_EQ(got->context, i);  // receives complete in the order they were posted
    EXPECT_EQ(got->byte_count, expected_lengths[i]);
  }
  EXPECT_EQ(recv_buffer[0], send_buffer[0]);
  EXPECT_EQ(std::memcmp(recv_buffer.data() + kSlot, send_buffer.data() + kSlot, kSlot), 0);
  EXPECT_EQ(std::memcmp(recv_buffer.data() + 2 * kSlot, send_buffer.data() + 2 * kSlot, 100), 0);
  EXPECT_EQ(std::memcmp(recv_buffer.data() + 2 * kSlot + 100, send_buffer.data() + 3 * kSlot, 200),
            0);
}

// The server's registered buffer travels to the client in the accept reply, as a real protocol
// would advertise it.
struct RemoteBuffer {
  std::uint64_t addr;
  std::uint64_t key;
  std::uint64_t size;
};

struct RdmaFixture {
  Connection c;
  std::vector<std::byte> server_buffer;
  std::unique_ptr<MemoryRegion> server_mr;
  RemoteBuffer remote{};

  void set_up(std::size_t size) {
    server_buffer.assign(size, std::byte{0});
    c.server_domain = open_or_die(server_host());
    c.client_domain = open_or_die(client_host());
    ASSERT_TRUE(c.server_domain && c.client_domain);
    auto mr = c.server_domain->register_memory(server_buffer.data(), size, Access::kRemote);
    ASSERT_TRUE(mr) << mr.status().to_string();
    server_mr = std::move(mr.value());
    RemoteSegment seg = server_mr->remote(server_buffer.data());
    RemoteBuffer advert{seg.addr, seg.key, size};
    std::vector<std::byte> reply(sizeof advert);
    std::memcpy(reply.data(), &advert, sizeof advert);
    auto listener = c.server_domain->listen(Address{BackendKind::kVerbs, server_host(), 0});
    ASSERT_TRUE(listener);
    c.listener = std::move(listener.value());
    std::thread server([&] {
      auto req = c.listener->get_request(kConnectTimeoutMs);
      if (!req) return;
      auto vi = (*req)->accept(reply, {}, kConnectTimeoutMs);
      if (vi) c.server = std::move(vi.value());
    });
    auto vi = c.client_domain->connect(c.listener->address(), {}, {}, kConnectTimeoutMs, nullptr);
    server.join();
    ASSERT_TRUE(vi) << vi.status().to_string();
    ASSERT_TRUE(c.server);
    c.client = std::move(vi.value());
    auto seen = c.client->peer_private_data();
    ASSERT_EQ(seen.size(), sizeof remote);
    std::memcpy(&remote, seen.data(), sizeof remote);
  }
};

void expect_success(VirtualInterface& vi, std::uint64_t context, int timeout_ms) {
  auto done = next_completion(vi, timeout_ms);
  ASSERT_TRUE(done) << "no completion within " << timeout_ms << " ms";
  EXPECT_EQ(done->context, context);
  EXPECT_EQ(done->status, CompletionStatus::kSuccess) << "provider error " << done->provider_error;
}

TEST(VerbsVi, RdmaWriteThenRead_RemoteMemoryChangesAndReadsBack) {
  SKIP_WITHOUT_RDMA_DEVICE();
  RdmaFixture f;
  ASSERT_NO_FATAL_FAILURE(f.set_up(8192));
  std::vector<std::byte> local(8192);
  for (std::size_t i = 0; i < local.size(); ++i) local[i] = static_cast<std::byte>(i ^ 0x5a);
  std::vector<std::byte> readback(8192);
  auto local_mr = f.c.client_domain->register_memory(local.data(), local.size(), Access::kLocal);
  auto readback_mr =
      f.c.client_domain->register_memory(readback.data(), readback.size(), Access::kLocal);
  ASSERT_TRUE(local_mr && readback_mr);

  Descriptor write = Descriptor::single(Opcode::kRdmaWrite, 1, local.data(), 4096, local_mr->get());
  write.remote = {f.remote.addr + 1000, f.remote.key};
  std::size_t bad = 0;
  ASSERT_TRUE(f.c.client->post_send({&write, 1}, &bad).is_ok());
  ASSERT_NO_FATAL_FAILURE(expect_success(*f.c.client, 1, 5000));
  // An RC write completes at the requester once the responder acked it: the bytes are there.
  EXPECT_EQ(std::memcmp(f.server_buffer.data() + 1000, local.data(), 4096), 0);
  EXPECT_EQ(f.server_buffer[999], std::byte{0});
  EXPECT_EQ(f.server_buffer[5096], std::byte{0});

  Descriptor read =
      Descriptor::single(Opcode::kRdmaRead, 2, readback.data(), 4096, readback_mr->get());
  read.remote = {f.remote.addr + 1000, f.remote.key};
  ASSERT_TRUE(f.c.client->post_send({&read, 1}, &bad).is_ok());
  auto done = next_completion(*f.c.client, 5000);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->opcode, Opcode::kRdmaRead);
  EXPECT_EQ(done->status, CompletionStatus::kSuccess);
  EXPECT_EQ(std::memcmp(readback.data(), local.data(), 4096), 0);
}

TEST(VerbsVi, RdmaWithWrongKey_CompletionErrorAndConnLost) {
  SKIP_WITHOUT_RDMA_DEVICE();
  RdmaFixture f;
  ASSERT_NO_FATAL_FAILURE(f.set_up(4096));
  std::vector<std::byte> local(64);
  auto local_mr = f.c.client_domain->register_memory(local.data(), local.size(), Access::kLocal);
  ASSERT_TRUE(local_mr);
  Descriptor write = Descriptor::single(Opcode::kRdmaWrite, 7, local.data(), 64, local_mr->get());
  write.remote = {f.remote.addr, f.remote.key ^ 0xffff};
  std::size_t bad = 0;
  ASSERT_TRUE(f.c.client->post_send({&write, 1}, &bad).is_ok());
  auto done = next_completion(*f.c.client, 5000);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, CompletionStatus::kError);
  EXPECT_NE(done->provider_error, 0);
  EXPECT_EQ(f.c.client->state(), ViState::kError);
  EXPECT_EQ(f.c.client->error().cause(), ConnLostCause::kCompletionError);
  std::printf("[ measure  ] wrong rkey: %s\n", f.c.client->error().to_string().c_str());
}

TEST(VerbsVi, Rdma64MiBWriteAndRead_ChecksumsMatch) {
  SKIP_WITHOUT_RDMA_DEVICE();
  constexpr std::size_t kSize = 64u << 20;
  RdmaFixture f;
  ASSERT_NO_FATAL_FAILURE(f.set_up(kSize));
  std::vector<std::byte> source(kSize);
  for (std::size_t i = 0; i < kSize; i += 8) {
    std::uint64_t v = i * 0x9E3779B97F4A7C15ULL;
    std::memcpy(source.data() + i, &v, 8);
  }
  std::vector<std::byte> readback(kSize);
  auto source_mr = f.c.client_domain->register_memory(source.data(), kSize, Access::kLocal);
  auto readback_mr = f.c.client_domain->register_memory(readback.data(), kSize, Access::kLocal);
  ASSERT_TRUE(source_mr && readback_mr);
  const std::uint64_t expected = checksum(source);

  auto start = Clock::now();
  Descriptor write =
      Descriptor::single(Opcode::kRdmaWrite, 1, source.data(), kSize, source_mr->get());
  write.remote = {f.remote.addr, f.remote.key};
  std::size_t bad = 0;
  ASSERT_TRUE(f.c.client->post_send({&write, 1}, &bad).is_ok());
  ASSERT_NO_FATAL_FAILURE(expect_success(*f.c.client, 1, 120000));
  double write_ms = ms_since(start);
  EXPECT_EQ(checksum(f.server_buffer), expected);

  start = Clock::now();
  Descriptor read =
      Descriptor::single(Opcode::kRdmaRead, 2, readback.data(), kSize, readback_mr->get());
  read.remote = {f.remote.addr, f.remote.key};
  ASSERT_TRUE(f.c.client->post_send({&read, 1}, &bad).is_ok());
  ASSERT_NO_FATAL_FAILURE(expect_success(*f.c.client, 2, 120000));
  double read_ms = ms_since(start);
  EXPECT_EQ(checksum(readback), expected);
  std::printf("[ measure  ] 64 MiB RDMA write %.0f ms (%.1f MB/s), read %.0f ms (%.1f MB/s)\n",
              write_ms, kSize / 1e3 / write_ms, read_ms, kSize / 1e3 / read_ms);
}

// Many sends in flight, inline (unsignaled) and signaled mixed, more in total than the send
// queue holds: the internal signaling must keep the SQ from filling with unsignaled WRs.
TEST(VerbsVi, ManyOutstandingSends_AllArriveInOrder) {
  SKIP_WITHOUT_RDMA_DEVICE();
  constexpr std::size_t kSlot = 64;
  constexpr std::size_t kRecvDepth = 256;
  constexpr std::uint32_t kMessages = 3000;
  constexpr std::uint32_t kWindow = 200;  // below the receive depth: no RNR
  std::vector<std::byte> recv_buffer(kSlot * kRecvDepth);
  const MemoryRegion* recv_region = nullptr;
  ViOptions server_options = prepost_receives(recv_buffer, recv_region, kSlot);
  server_options.recv_queue_depth = kRecvDepth;
  ViOptions client_options;
  client_options.send_queue_depth = 64;

  Connection c;
  c.server_domain = open_or_die(server_host());
  c.client_domain = open_or_die(client_host());
  ASSERT_TRUE(c.server_domain && c.client_domain);
  auto recv_mr =
      c.server_domain->register_memory(recv_buffer.data(), recv_buffer.size(), Access::kLocal);
  ASSERT_TRUE(recv_mr);
  recv_region = recv_mr->get();
  auto listener = c.server_domain->listen(Address{BackendKind::kVerbs, server_host(), 0});
  ASSERT_TRUE(listener);
  c.listener = std::move(listener.value());
  std::thread server([&] {
    auto req = c.listener->get_request(kConnectTimeoutMs);
    if (!req) return;
    auto vi = (*req)->accept({}, server_options, kConnectTimeoutMs);
    if (vi) c.server = std::move(vi.value());
  });
  auto vi = c.client_domain->connect(c.listener->address(), {}, client_options, kConnectTimeoutMs,
                                     nullptr);
  server.join();
  ASSERT_TRUE(vi) << vi.status().to_string();
  ASSERT_TRUE(c.server);
  c.client = std::move(vi.value());
  ASSERT_GE(c.client->inline_limit(), sizeof(std::uint32_t));

  std::vector<std::byte> send_buffer(kSlot * 64);
  auto send_mr =
      c.client_domain->register_memory(send_buffer.data(), send_buffer.size(), Access::kLocal);
  ASSERT_TRUE(send_mr);

  std::uint32_t sent = 0;
  std::uint32_t received = 0;
  std::uint32_t signaled_done = 0;
  std::uint32_t signaled_posted = 0;
  std::uint32_t queue_full = 0;
  std::array<Completion, 32> completions;
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (received < kMessages && Clock::now() < deadline) {
    while (sent < kMessages && sent - received < kWindow) {
      // Every 4th message is a signaled (non-inline) send from registered memory.
      const bool is_inline = sent % 4 != 0;
      std::byte* slot = send_buffer.data() + (sent % 64) * kSlot;
      std::memcpy(slot, &sent, sizeof sent);
      Descriptor d = Descriptor::single(Opcode::kSend, sent, slot, sizeof sent, send_mr->get());
      d.inline_data = is_inline;
      std::size_t bad = 0;
      Status s = c.client->post_send({&d, 1}, &bad);
      if (s.code() == Code::kResource) {
        ++queue_full;
        break;  // SQ full: reap completions first
      }
      ASSERT_TRUE(s.is_ok()) << s.to_string();
      if (!is_inline) ++signaled_posted;
      ++sent;
    }
    std::size_t n = c.client->cq().poll(completions);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(completions[i].status, CompletionStatus::kSuccess);
      ASSERT_EQ(completions[i].context % 4, 0u) << "an inline send reported a completion";
      ++signaled_done;
    }
    n = c.server->cq().poll(completions);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(completions[i].status, CompletionStatus::kSuccess);
      std::byte* slot = recv_buffer.data() + completions[i].context * kSlot;
      std::uint32_t seq = 0;
      std::memcpy(&seq, slot, sizeof seq);
      ASSERT_EQ(seq, received) << "message out of order";
      ++received;
      Descriptor again =
          Descriptor::single(Opcode::kRecv, completions[i].context, slot, kSlot, recv_region);
      std::size_t bad = 0;
      ASSERT_TRUE(c.server->post_recv({&again, 1}, &bad).is_ok());
    }
  }
  EXPECT_EQ(received, kMessages);
  while (signaled_done < signaled_posted && Clock::now() < deadline) {
    auto done = next_completion(*c.client, 5000);
    ASSERT_TRUE(done);
    ++signaled_done;
  }
  EXPECT_EQ(signaled_done, signaled_posted);
  EXPECT_EQ(c.client->state(), ViState::kConnected);
  std::printf("[ measure  ] %u sends, send queue full %u times\n", kMessages, queue_full);
}

TEST(VerbsVi, PostBeyondInlineLimit_RejectedWithBadIndex) {
  SKIP_WITHOUT_RDMA_DEVICE();
  Connection c;
  ASSERT_NO_FATAL_FAILURE(connect_pair(c, {}, {}));
  std::vector<std::byte> data(c.client->inline_limit() + 1);
  auto mr = c.client_domain->register_memory(data.data(), data.size(), Access::kLocal);
  ASSERT_TRUE(mr);
  // Too big for inline: refused before anything is posted, and the VI stays usable.
  Descriptor d = Descriptor::single(Opcode::kSend, 2, data.data(),
                                    static_cast<std::uint32_t>(data.size()), mr->get());
  d.inline_data = true;
  std::size_t bad = 99;
  Status s = c.client->post_send({&d, 1}, &bad);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.to_string();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(c.client->state(), ViState::kConnected);
}

// ---- failure detection

// The child half of PeerKilled: this binary re-executed with VIADUCT_VERBS_TEST_CHILD_FD set
// serves one connection until killed, before GoogleTest ever starts.
[[noreturn]] void serve_as_child(int report_fd) {
  auto domain = verbs::open_domain(Address{BackendKind::kVerbs, server_host(), 0});
  if (!domain) _exit(3);
  auto listener = (*domain)->listen(Address{BackendKind::kVerbs, server_host(), 0});
  if (!listener) _exit(4);
  std::uint16_t port = (*listener)->address().port;
  if (write(report_fd, &port, sizeof port) != sizeof port) _exit(5);
  auto req = (*listener)->get_request(30000);
  if (!req) _exit(6);
  // Receives for the parent's probing sends, so those never meet an RNR.
  std::vector<std::byte> buffer(64 * 64);
  auto mr = (*domain)->register_memory(buffer.data(), buffer.size(), Access::kLocal);
  if (!mr) _exit(7);
  const MemoryRegion* region = mr->get();
  ViOptions options = prepost_receives(buffer, region, 64);
  auto vi = (*req)->accept({}, options, 30000);
  if (!vi) _exit(8);
  // Established on this side too: a kill from now on tears down a live connection.
  const char established = 'E';
  if (write(report_fd, &established, 1) != 1) _exit(9);
  // Hold the connection until the parent's SIGKILL (or give up after a minute).
  for (int i = 0; i < 600; ++i) {
    std::array<Completion, 8> sink;
    (*vi)->cq().poll(sink);
    usleep(100 * 1000);
  }
  _exit(0);
}

// Serving starts from a test environment rather than a static initializer: the tunables it
// reads are globals of another translation unit, constructed in no guaranteed order before main.
class ChildServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* fd = std::getenv("VIADUCT_VERBS_TEST_CHILD_FD");
    if (fd != nullptr) serve_as_child(std::atoi(fd));
  }
};
// GoogleTest takes ownership of the environment.
[[maybe_unused]] ::testing::Environment* const kChildServer =
    ::testing::AddGlobalTestEnvironment(new ChildServerEnvironment);

TEST(VerbsVi, PeerKilled_ConnLostReported) {
  SKIP_WITHOUT_RDMA_DEVICE();
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A fresh process image: the child must not share this process's verbs file descriptors,
    // or the kernel would not tear its connection down on SIGKILL.
    close(pipe_fds[0]);
    std::string fd = std::to_string(pipe_fds[1]);
    setenv("VIADUCT_VERBS_TEST_CHILD_FD", fd.c_str(), 1);
    execl("/proc/self/exe", "verbs_vi_test_child", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipe_fds[1]);
  struct ChildReaper {
    pid_t pid;
    ~ChildReaper() {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reaper{child};
  pollfd pfd{pipe_fds[0], POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 30000), 1) << "child server did not start";
  std::uint16_t port = 0;
  ASSERT_EQ(read(pipe_fds[0], &port, sizeof port), static_cast<ssize_t>(sizeof port));

  auto domain = open_or_die(client_host());
  ASSERT_TRUE(domain);
  auto vi = domain->connect(Address{BackendKind::kVerbs, server_host(), port}, {}, {},
                            kConnectTimeoutMs, nullptr);
  ASSERT_TRUE(vi) << vi.status().to_string();
  ASSERT_EQ((*vi)->state(), ViState::kConnected);
  // Killed before its side saw ESTABLISHED, the child's kernel would send a REJ, not a DREQ.
  char established = 0;
  ASSERT_EQ(poll(&pfd, 1, 30000), 1) << "child never reported its side established";
  ASSERT_EQ(read(pipe_fds[0], &established, 1), 1);
  close(pipe_fds[0]);

  // Probing sends while waiting: if the DREQ were lost, the dead peer's silence still ends in
  // IBV_WC_RETRY_EXC_ERR (an idle RC connection would never notice).
  std::vector<std::byte> probe(64);
  auto probe_mr = domain->register_memory(probe.data(), probe.size(), Access::kLocal);
  ASSERT_TRUE(probe_mr);
  auto start = Clock::now();
  ASSERT_EQ(kill(child, SIGKILL), 0);
  std::array<Completion, 8> sink;
  std::uint64_t probes = 0;
  while ((*vi)->state() == ViState::kConnected && ms_since(start) < 10000) {
    if (ms_since(start) > 200.0 * static_cast<double>(probes)) {
      Descriptor d = Descriptor::single(Opcode::kSend, probes++, probe.data(), 64, probe_mr->get());
      std::size_t bad = 0;
      (void)(*vi)->post_send({&d, 1}, &bad);
    }
    (*vi)->cq().poll(sink);
    if ((*vi)->state() == ViState::kConnected) (void)(*vi)->cq().wait(20);
  }
  double detect_ms = ms_since(start);
  ASSERT_EQ((*vi)->state(), ViState::kError) << "no CONN_LOST within 10 s of SIGKILL";
  EXPECT_EQ((*vi)->error().code(), Code::kConnLost);
  std::printf("[ measure  ] SIGKILL of the peer -> %s after %.1f ms\n",
              (*vi)->error().to_string().c_str(), detect_ms);
  EXPECT_LT(detect_ms, 2000.0);
}

// A silent peer (every packet of the server's side dropped) while traffic flows: only the RC
// retry machinery can tell, as IBV_WC_RETRY_EXC_ERR after retry_count ACK timeouts.
TEST(VerbsVi, SilentPeerNetemLoss_ConnLostFromRetryExceeded) {
  SKIP_WITHOUT_RDMA_DEVICE();
  const std::string dev = env_or("VIADUCT_TEST_VERBS_NETEM_DEV", "");
  if (dev.empty()) {
    GTEST_SKIP() << "skipped: needs the two-host pair topology (VIADUCT_TEST_VERBS_NETEM_DEV=va)";
  }
  constexpr std::size_t kSlot = 64;
  std::vector<std::byte> recv_buffer(kSlot * 256);
  const MemoryRegion* recv_region = nullptr;
  ViOptions server_options = prepost_receives(recv_buffer, recv_region, kSlot);
  Connection c;
  c.server_domain = open_or_die(server_host());
  c.client_domain = open_or_die(client_host());
  ASSERT_TRUE(c.server_domain && c.client_domain);
  auto recv_mr =
      c.server_domain->register_memory(recv_buffer.data(), recv_buffer.size(), Access::kLocal);
  ASSERT_TRUE(recv_mr);
  recv_region = recv_mr->get();
  auto listener = c.server_domain->listen(Address{BackendKind::kVerbs, server_host(), 0});
  ASSERT_TRUE(listener);
  c.listener = std::move(listener.value());
  std::thread server([&] {
    auto req = c.listener->get_request(kConnectTimeoutMs);
    if (!req) return;
    auto vi = (*req)->accept({}, server_options, kConnectTimeoutMs);
    if (vi) c.server = std::move(vi.value());
  });
  auto vi = c.client_domain->connect(c.listener->address(), {}, {}, kConnectTimeoutMs, nullptr);
  server.join();
  ASSERT_TRUE(vi) << vi.status().to_string();
  ASSERT_TRUE(c.server);
  c.client = std::move(vi.value());

  std::vector<std::byte> send_buffer(kSlot);
  auto send_mr =
      c.client_domain->register_memory(send_buffer.data(), send_buffer.size(), Access::kLocal);
  ASSERT_TRUE(send_mr);
  const std::string add = "tc qdisc add dev " + dev + " root netem loss 100%";
  const std::string del = "tc qdisc del dev " + dev + " root 2>/dev/null";
  struct QdiscGuard {
    std::string del;
    ~QdiscGuard() { (void)std::system(del.c_str()); }
  } guard{del};

  // Traffic flows: one signaled send at a time, receives reposted by the server.
  std::uint64_t sent = 0;
  std::array<Completion, 16> completions;
  auto pump = [&](bool cut) -> bool {  // returns false once the client VI is lost
    Descriptor d =
        Descriptor::single(Opcode::kSend, sent++, send_buffer.data(), kSlot, send_mr->get());
    std::size_t bad = 0;
    if (!c.client->post_send({&d, 1}, &bad).is_ok()) return false;
    auto until = Clock::now() + std::chrono::seconds(cut ? 10 : 5);
    for (;;) {
      std::size_t n = c.server->cq().poll(completions);
      for (std::size_t i = 0; i < n; ++i) {
        if (completions[i].status != CompletionStatus::kSuccess) continue;
        Descriptor again = Descriptor::single(Opcode::kRecv, completions[i].context,
                                              recv_buffer.data() + completions[i].context * kSlot,
                                              kSlot, recv_region);
        (void)c.server->post_recv({&again, 1}, &bad);
      }
      n = c.client->cq().poll(completions);
      if (n > 0) return completions[0].status == CompletionStatus::kSuccess;
      if (c.client->state() != ViState::kConnected) return false;
      if (Clock::now() > until) return true;
      (void)c.client->cq().wait(5);
    }
  };
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(pump(false));
  ASSERT_EQ(std::system(add.c_str()), 0) << add;
  auto start = Clock::now();
  while (pump(true) && ms_since(start) < 10000) {
  }
  double detect_ms = ms_since(start);
  ASSERT_EQ(c.client->state(), ViState::kError) << "no CONN_LOST within 10 s of the cut";
  EXPECT_EQ(c.client->error().code(), Code::kConnLost);
  EXPECT_EQ(c.client->error().cause(), ConnLostCause::kCompletionError)
      << c.client->error().to_string();
  std::printf("[ measure  ] netem loss 100%% -> %s after %.1f ms\n",
              c.client->error().to_string().c_str(), detect_ms);
  EXPECT_LT(detect_ms, 3000.0);
}

// ---- link down (pair topology; the guest run orders these last: they leave the wire cut)

// A link down under a live connection leaves that rxe device's CM deaf, so each link-down test
// starts on fresh devices. It runs before this process makes any verbs call: rxe devices cannot
// be deleted while a process holds them open.
void rewire_before_link_down() {
  const std::string rewire = env_or("VIADUCT_TEST_VERBS_REWIRE", "");
  if (!rewire.empty()) {
    ASSERT_EQ(std::system((rewire + " >/dev/null").c_str()), 0) << rewire;
  }
}

// Connects client (client_host) to server (server_host) with receives posted on the server,
// sets `dev` down, then keeps probing with one send every 200 ms until the client VI leaves
// kConnected. Returns the milliseconds from the link down to kConnLost (or < 0: never).
double link_down_detect_ms(const std::string& dev) {
  constexpr std::size_t kSlot = 64;
  std::vector<std::byte> recv_buffer(kSlot * 256);
  const MemoryRegion* recv_region = nullptr;
  ViOptions server_options = prepost_receives(recv_buffer, recv_region, kSlot);
  Connection c;
  c.server_domain = open_or_die(server_host());
  c.client_domain = open_or_die(client_host());
  if (!c.server_domain || !c.client_domain) return -1;
  auto recv_mr =
      c.server_domain->register_memory(recv_buffer.data(), recv_buffer.size(), Access::kLocal);
  EXPECT_TRUE(recv_mr);
  if (!recv_mr) return -1;
  recv_region = recv_mr->get();
  auto listener = c.server_domain->listen(Address{BackendKind::kVerbs, server_host(), 0});
  EXPECT_TRUE(listener);
  if (!listener) return -1;
  c.listener = std::move(listener.value());
  std::thread server([&] {
    auto req = c.listener->get_request(kConnectTimeoutMs);
    if (!req) return;
    auto vi = (*req)->accept({}, server_options, kConnectTimeoutMs);
    if (vi) c.server = std::move(vi.value());
  });
  auto vi = c.client_domain->connect(c.listener->address(), {}, {}, kConnectTimeoutMs, nullptr);
  server.join();
  EXPECT_TRUE(vi) << vi.status().to_string();
  if (!vi || !c.server) return -1;
  c.client = std::move(vi.value());

  std::vector<std::byte> probe(kSlot);
  auto probe_mr = c.client_domain->register_memory(probe.data(), probe.size(), Access::kLocal);
  EXPECT_TRUE(probe_mr);
  if (!probe_mr) return -1;
  std::array<Completion, 16> sink;
  std::uint64_t probes = 0;
  auto send_probe = [&] {
    Descriptor d =
        Descriptor::single(Opcode::kSend, probes++, probe.data(), kSlot, probe_mr->get());
    std::size_t bad = 0;
    return c.client->post_send({&d, 1}, &bad);
  };
  // The wire works before the cut.
  EXPECT_TRUE(send_probe().is_ok());
  auto done = next_completion(*c.client, 5000);
  EXPECT_TRUE(done && done->status == CompletionStatus::kSuccess);
  if (!done || done->status != CompletionStatus::kSuccess) return -1;

  const std::string down = "ip link set " + dev + " down";
  struct LinkGuard {  // the link comes back whatever happens; the next test rewires the devices
    std::string up;
    ~LinkGuard() { (void)std::system(up.c_str()); }
  } guard{"ip link set " + dev + " up"};
  EXPECT_EQ(std::system(down.c_str()), 0) << down;
  auto start = Clock::now();
  probes = 1;
  while (c.client->state() == ViState::kConnected && ms_since(start) < 10000) {
    if (ms_since(start) > 200.0 * static_cast<double>(probes - 1)) (void)send_probe();
    c.client->cq().poll(sink);
    if (c.client->state() == ViState::kConnected) (void)c.client->cq().wait(20);
  }
  double detect_ms = ms_since(start);
  EXPECT_EQ(c.client->state(), ViState::kError) << "no CONN_LOST within 10 s of " << down;
  if (c.client->state() != ViState::kError) return -1;
  EXPECT_EQ(c.client->error().code(), Code::kConnLost);
  // Posting on the lost VI is refused, never queued into a dead QP.
  EXPECT_EQ(send_probe().code(), Code::kConnLost);
  std::printf("[ measure  ] %s -> %s after %.1f ms (%llu probing sends)\n", down.c_str(),
              c.client->error().to_string().c_str(), detect_ms,
              static_cast<unsigned long long>(probes - 1));
  return detect_ms;
}

// The client's own link goes down: rxe fails the next send (IBV_WC_LOC_QP_OP_ERR).
TEST(VerbsVi, LocalLinkDown_NextSendFailsConnLost) {
  ASSERT_NO_FATAL_FAILURE(rewire_before_link_down());
  SKIP_WITHOUT_RDMA_DEVICE();
  const std::string dev = env_or("VIADUCT_TEST_VERBS_CLIENT_DEV", "");
  if (dev.empty())
    GTEST_SKIP() << "skipped: needs the pair topology (VIADUCT_TEST_VERBS_CLIENT_DEV)";
  double detect_ms = link_down_detect_ms(dev);
  ASSERT_GE(detect_ms, 0.0);
  EXPECT_LT(detect_ms, 10000.0);
}

// The server's link goes down: the client learns it from its retries running out
// (RDMA_CM_EVENT_UNREACHABLE ~3.2 s or IBV_WC_RETRY_EXC_ERR ~3.4 s with ack 14 / retry 6).
TEST(VerbsVi, RemoteLinkDown_ConnLostWithinBound) {
  ASSERT_NO_FATAL_FAILURE(rewire_before_link_down());
  SKIP_WITHOUT_RDMA_DEVICE();
  const std::string dev = env_or("VIADUCT_TEST_VERBS_SERVER_DEV", "");
  if (dev.empty())
    GTEST_SKIP() << "skipped: needs the pair topology (VIADUCT_TEST_VERBS_SERVER_DEV)";
  double detect_ms = link_down_detect_ms(dev);
  ASSERT_GE(detect_ms, 0.0);
  EXPECT_LT(detect_ms, 10000.0);
}

}  // namespace
}  // namespace viaduct::transport
