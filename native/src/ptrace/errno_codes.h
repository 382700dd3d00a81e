// Maps a failed ptrace or /proc access onto the engine's stable error codes, with the cause an
// operator can act on (permission, another tracer, a vanished or zombie target).
#pragma once

#include <sys/types.h>

#include <string>

namespace hotpatch {

// What /proc/PID/status says about a process, read without ptrace.
struct ProcessStatus {
  bool exists = false;
  char state = '?';      // R, S, D, Z, X, t, ...
  pid_t tracer_pid = 0;  // 0 when not traced
  bool kill_pending = false;  // SIGKILL is on its way: the process is dying
};

ProcessStatus ReadProcessStatus(pid_t pid);

// Throws the EngineError that explains why `what` failed with `err` on `pid`.
[[noreturn]] void ThrowForErrno(int err, pid_t pid, const std::string& what);

// Whether the process (or, given a thread id, the thread) has exited: gone, zombie or dying.
bool HasExited(pid_t pid);

// Throws ETARGET_EXITED when the process has exited (gone, zombie or dying) since an operation on it began.
void ThrowIfGone(pid_t pid, const std::string& during);

// Throws ENOPROCESS / EZOMBIE / ETARGET_EXITED / ETRACED when the process cannot be operated on at all.
void RequireLiveProcess(pid_t pid);

}  // namespace hotpatch
