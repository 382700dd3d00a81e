// The safety check: is any thread executing in, or due to return into, code we are about to
// rewrite or unmap?
// - FindConflict is conservative: every thread's PC and every word of its used stack (from rsp to
//   the end of the stack mapping). A stale value can make us wait, a real return address is never
//   missed.
// - ExactCheck unwinds every thread from CFI (StackUnwinder) and judges only its real frames; where a
//   step cannot be trusted, the rest of that stack gets the conservative scan. It also guards the
//   parts the compiler split off a function (.cold, .part.N), and says, per busy thread, where the
//   return address of its outermost busy frame is stored (what a wait for the return hijacks).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../proc_maps.h"
#include "../ptrace/stopped_process.h"
#include "unwinder.h"

namespace hotpatch {

// Code that must be free: a position p conflicts when lo <= p < hi.
struct GuardedRange {
  uint64_t lo;
  uint64_t hi;
  std::string name;  // what it is, for the error message (a function name, "patch code of X")
};

struct Conflict {
  pid_t tid;
  uint64_t position;
  bool is_pc;  // false: a return address (or saved PC) found on the stack
  std::string name;
  std::vector<uint64_t> frames;  // exact check: the thread's frames, innermost first, to the busy one
  bool scanned = false;          // exact check: found by the conservative scan of an un-unwindable rest
  std::vector<Conflict> others;  // exact check: the other threads in the way
  std::shared_ptr<StackUnwinder> symbols;  // names the frames (after the stop)
};

// One thread in the way, as the exact check sees it.
struct BusyThread {
  pid_t tid;
  Conflict conflict;
  // The outermost busy frame's return-address slot and the address it holds; 0 when not known
  // exactly (the hit came from the conservative scan, or the frame is the thread's first).
  uint64_t ra_slot = 0;
  uint64_t return_to = 0;
};

class ExactCheck {
 public:
  // Before the stop: reports the target's modules and finds the split parts of `owners` (entry
  // address and symbol of each guarded function). Should libdwfl fail to read the target, every
  // stack is scanned conservatively.
  ExactCheck(pid_t pid, std::vector<GuardedRange> ranges, const std::vector<std::pair<uint64_t, std::string>>& owners);

  // Inside a stop. `overlay` holds the original words of return-address slots we hijacked. With
  // `only`, just those threads are judged (the others have not moved since they were).
  std::vector<BusyThread> Busy(const StoppedProcess& stopped, std::vector<Mapping>& maps,
                               const std::map<uint64_t, uint64_t>& overlay, const std::vector<pid_t>* only = nullptr);
  // StackUnwinder may be null (libdwfl could not read the target).
  StackUnwinder* unwinder() { return unwinder_.get(); }

  // The conflict of the first busy thread, naming the others.
  static Conflict Combine(const std::vector<BusyThread>& busy);

 private:
  std::vector<GuardedRange> ranges_;
  std::shared_ptr<StackUnwinder> unwinder_;
};

// `maps` may be stale (read before the stop); a stack it does not know is looked up afresh.
// With `only` set, just that thread is checked.
std::optional<Conflict> FindConflict(const StoppedProcess& stopped, std::vector<Mapping>& maps,
                                     const std::vector<GuardedRange>& ranges, pid_t only = 0);

// With an exact conflict, names every busy thread's frames: call it after the stop has ended.
std::string DescribeConflict(pid_t pid, const Conflict& c);

}  // namespace hotpatch
