// Busy-polling that stays polite when it has to share a core.
//
// Two busy-polling threads that the scheduler puts on one core (a client and a server on a small
// machine, or while another process briefly takes the other core) otherwise take turns in whole
// time slices of several milliseconds: each spins through its slice waiting for the other. After
// a run of empty polls this yields the CPU once. With nothing else runnable, sched_yield returns
// at once (well under a microsecond); with another thread waiting on this core, that thread runs
// now instead of at the end of the slice.
#pragma once

#include <sched.h>

#include <cstddef>

namespace viaduct {

class PoliteSpin {
 public:
  // Empty polls in a row before a yield: long enough that a normal round trip never yields.
  static constexpr unsigned kYieldAfterIdlePolls = 64;

  void after_poll(std::size_t handled) {
    if (handled != 0) {
      idle_ = 0;
    } else if (++idle_ >= kYieldAfterIdlePolls) {
      idle_ = 0;
      sched_yield();
    }
  }

 private:
  unsigned idle_ = 0;
};

}  // namespace viaduct
