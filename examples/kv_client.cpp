// A client of the replicated key-value service: puts COUNT keys, then reads every one back and
// checks it. Kill the active server meanwhile: the client fails over and sees no error.
//
//   kv_client --name KV --lookup 127.0.0.1:7100,127.0.0.1:7101 --service-key HEX --count 5000
//   kv_client --version      (the library's version, then the headers')
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <viaduct/client.hpp>
#include <viaduct/version.hpp>

#include "kv_service.hpp"

int main(int argc, char** argv) {
  viaduct::ClientOptions options;
  int count = 1000;
  int pause_us = 0;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--version") {
      std::printf("%s %s\n", viaduct::version(), VIADUCT_VERSION_STRING);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "kv_client: %s needs a value\n", flag.c_str());
      return 2;
    }
    std::string value = argv[++i];
    if (flag == "--name")
      options.name = value;
    else if (flag == "--lookup")
      options.lookup = value;
    else if (flag == "--service-key")
      options.service_key = value;
    else if (flag == "--count")
      count = std::stoi(value);
    else if (flag == "--pause-us")
      pause_us = std::stoi(value);
    else {
      std::fprintf(stderr, "kv_client: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  auto client = viaduct::Client::open(options);
  if (!client) {
    std::fprintf(stderr, "kv_client: %s\n", client.status().to_string().c_str());
    return 1;
  }
  (*client)->on_failover([](const viaduct::FailoverEvent& event) {
    std::printf("failed over to %s epoch %llu in %.2f ms, %u re-sent\n", event.server.c_str(),
                static_cast<unsigned long long>(event.epoch), event.total_ms, event.resent);
    std::fflush(stdout);
  });
  std::vector<std::byte> answer(4096);
  int errors = 0;
  auto key = [](int i) { return "key-" + std::to_string(i); };
  auto value = [](int i) { return "value-" + std::to_string(i * 7919); };
  for (int i = 0; i < count; ++i) {
    auto done = (*client)->call(kv::encode('P', key(i), value(i)), answer);
    if (!done) {
      std::fprintf(stderr, "put %d: %s\n", i, done.status().to_string().c_str());
      ++errors;
    }
    if (pause_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
  }
  int wrong = 0;
  for (int i = 0; i < count; ++i) {
    std::uint32_t status = 0;
    auto n = (*client)->call(kv::encode('G', key(i)), answer, &status);
    if (!n) {
      std::fprintf(stderr, "get %d: %s\n", i, n.status().to_string().c_str());
      ++errors;
      continue;
    }
    std::string got(reinterpret_cast<const char*>(answer.data()), n.value());
    if (status != kv::kOk || got != value(i)) ++wrong;
  }
  std::printf("puts %d, errors %d, wrong values %d, failovers %llu, epoch %llu\n", count, errors,
              wrong, static_cast<unsigned long long>((*client)->failovers()),
              static_cast<unsigned long long>((*client)->epoch()));
  return errors == 0 && wrong == 0 ? 0 : 1;
}
