#include "transport/provider_signals.hpp"

#include <dlfcn.h>

#include <csignal>
#include <cstring>
#include <initializer_list>

namespace viaduct::transport {
namespace {

// True if `handler` is code of a library known to take signals from its host process.
bool installed_by_provider_library(void* handler) {
  Dl_info info{};
  if (handler == nullptr || dladdr(handler, &info) == 0 || info.dli_fname == nullptr) {
    return false;
  }
  return std::strstr(info.dli_fname, "libinfinipath") != nullptr ||
         std::strstr(info.dli_fname, "libpsm_infinipath") != nullptr;
}

}  // namespace

void restore_signals_taken_by_providers() {
  for (int signal_number :
       {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE}) {
    struct sigaction current {};
    if (sigaction(signal_number, nullptr, &current) != 0) continue;
    void* handler = (current.sa_flags & SA_SIGINFO) != 0
                        ? reinterpret_cast<void*>(current.sa_sigaction)
                        : reinterpret_cast<void*>(current.sa_handler);
    if (handler == reinterpret_cast<void*>(SIG_DFL) ||
        handler == reinterpret_cast<void*>(SIG_IGN)) {
      continue;
    }
    if (!installed_by_provider_library(handler)) continue;
    struct sigaction restored {};
    restored.sa_handler = SIG_DFL;
    sigemptyset(&restored.sa_mask);
    sigaction(signal_number, &restored, nullptr);
  }
}

// Loaded after libfabric's dependencies (their constructors ran first), before main().
[[gnu::constructor]] void restore_signals_at_load() {
  restore_signals_taken_by_providers();
}

}  // namespace viaduct::transport
