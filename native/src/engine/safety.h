// The safety check: is any thread executing in, or due to return into, code we are about to
// rewrite or unmap? Positions are every thread's PC and every word of its used stack (from rsp to
// the end of the stack mapping). Scanning every word is conservative: a stale value can make us
// wait, but a real return address can never be missed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../proc_maps.h"
#include "../ptrace/stopped_process.h"

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
};

// `maps` may be stale (read before the stop); a stack it does not know is looked up afresh.
std::optional<Conflict> FindConflict(const StoppedProcess& stopped, std::vector<Mapping>& maps,
                                     const std::vector<GuardedRange>& ranges);

std::string DescribeConflict(pid_t pid, const Conflict& c);

}  // namespace hotpatch
