// ProcessSession: what one operation knows about one process, learned once before its first stop
// (the maps, the descriptor, the entry point that injected calls borrow) and kept up to date by
// the operation's own stops, so that an apply (load, then activate) reads each fact once. Each stop
// still reads the descriptor it rewrites, inside the stop: another hotpatch process may have
// changed the target between two stops, and the truth is the target's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "../proc_maps.h"
#include "descriptor.h"

namespace hotpatch {

struct ProcessSession {
  // Throws ENOPROCESS/EZOMBIE for a process that is not there, EBAD_DESCRIPTOR for a foreign one.
  explicit ProcessSession(pid_t pid);

  pid_t pid;
  std::vector<Mapping> maps;
  Descriptor desc;  // as of the session's last stop (or its opening)
  uint64_t stub;    // the entry point: where injected system calls and calls run
};

}  // namespace hotpatch
