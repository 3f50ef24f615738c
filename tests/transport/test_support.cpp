#include "tests/transport/test_support.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
  options.on_channel_closed = [this](const Status&) { ++closed_channels; };
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
  (void)channel.respond(r.request_id, std::span(buffer_.data(), r.payload.size()));
  ++served;
}

}  // namespace viaduct::testing
