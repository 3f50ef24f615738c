// Signal dispositions taken by libfabric's dependencies, given back.
//
// libinfinipath (loaded with libfabric for its psm provider) installs, from its constructor,
// handlers for SIGINT, SIGTERM, SIGSEGV, SIGBUS, SIGILL, SIGABRT and SIGFPE in every process that
// links libfabric, before main() runs. Its handler writes a backtrace file and calls exit(): a
// Ctrl-C inside fi_getinfo then deadlocks in libfabric's destructor, and a crash becomes exit
// status 1 with no core. Any such handler is reset to the default action; handlers anyone else
// installed (the application's) are left alone.
#pragma once

namespace viaduct::transport {

// Idempotent and cheap after the first call. Runs on its own when the library is loaded (a
// constructor) and again when a Domain opens, in case the provider's library was loaded late.
void restore_signals_taken_by_providers();

}  // namespace viaduct::transport
