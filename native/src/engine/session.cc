// Opening a ProcessSession: one read of each fact.
#include "session.h"

#include "../ptrace/errno_codes.h"
#include "../ptrace/proc_auxv.h"
#include "../ptrace/target_memory.h"

namespace hotpatch {

ProcessSession::ProcessSession(pid_t p) : pid(p) {
  RequireLiveProcess(pid);
  maps = ReadProcMaps(pid);
  desc = ReadDescriptor(TargetMemory(pid), maps);
  stub = ReadEntryPoint(pid);
}

}  // namespace hotpatch
