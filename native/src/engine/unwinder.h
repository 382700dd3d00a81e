// Exact unwinding of the threads of a stopped target from the objects' CFI (.eh_frame,
// .debug_frame) with elfutils' libdwfl. The modules are reported and their symbols read when the
// object is made, before any stop; inside a stop only CFI is evaluated, over memory we read
// page-wise from /proc/PID/mem. Every step is checked: a step is trusted only when CFI covers the
// frame's address and the return address it produced was read from the stack. Where a step is not
// trusted, the caller must treat the rest of that stack conservatively.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../ptrace/stopped_process.h"

namespace hotpatch {

struct Frame {
  uint64_t pc;        // frame 0: the thread's PC; above: the return address into this frame
  bool activation;    // pc is exact (frame 0, or a frame a signal interrupted), not a return address
  uint64_t ra_slot;   // where this frame's own return address is stored (0: unknown)
};

struct UnwoundStack {
  std::vector<Frame> frames;  // innermost first; every one is real
  // true: the unwind reached the thread's outermost frame by CFI. false: from `rest_from` up to
  // the end of the stack nothing is known exactly, scan it conservatively.
  bool complete = false;
  uint64_t rest_from = 0;
};

// A code range that a function owns besides its body: the parts the compiler split off it.
struct SplitPart {
  uint64_t lo;
  uint64_t hi;
  std::string name;
};

class StackUnwinder {
 public:
  // Reports the modules of `pid` now (reads /proc/PID/maps and opens the objects); null when
  // libdwfl cannot read them.
  static std::shared_ptr<StackUnwinder> Open(pid_t pid);
  ~StackUnwinder();
  StackUnwinder(const StackUnwinder&) = delete;
  StackUnwinder& operator=(const StackUnwinder&) = delete;

  // Unwinds thread `t` of `stopped`. `overlay` replaces the words at the given stack addresses
  // (return-address slots we hijacked hold their original values there).
  UnwoundStack Unwind(const StoppedProcess& stopped, const ThreadState& t,
                      const std::map<uint64_t, uint64_t>& overlay);
  // Resets the page cache: call once per stop, before the first Unwind.
  void NewStop();

  // The .cold / .part.N parts of the function `name` whose body holds `addr` (same object).
  std::vector<SplitPart> SplitPartsOf(uint64_t addr, const std::string& name);
  // Whether a C++ unwinder (libgcc's _Unwind_RaiseException) is in the target: then an exception
  // or a thread cancellation could unwind through a frame, reading its return address.
  bool HasCxxUnwinder();
  // "function+0xoff (object)" for an address; never inside a stop (it reads symbol tables).
  std::string Describe(uint64_t addr);

  struct Session;  // libdwfl's state and callbacks (unwinder.cc)

 private:
  explicit StackUnwinder(pid_t pid);
  std::unique_ptr<Session> s_;
};

}  // namespace hotpatch
