#include "errno_codes.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "../engine_error.h"

namespace hotpatch {

ProcessStatus ReadProcessStatus(pid_t pid) {
  ProcessStatus st;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return st;
  st.exists = true;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("State:", 0) == 0) {
      const auto pos = line.find_first_not_of(" \t", 6);
      if (pos != std::string::npos) st.state = line[pos];
    } else if (line.rfind("TracerPid:", 0) == 0) {
      st.tracer_pid = static_cast<pid_t>(std::stol(line.substr(10)));
    }
  }
  return st;
}

void RequireLiveProcess(pid_t pid) {
  const ProcessStatus st = ReadProcessStatus(pid);
  const std::string p = std::to_string(pid);
  if (!st.exists) throw EngineError("ENOPROCESS", "no process " + p + " (it is not running, or not in this PID namespace)");
  if (st.state == 'Z') throw EngineError("EZOMBIE", "process " + p + " is a zombie: it has exited and waits for its parent to reap it");
  if (st.state == 'X') throw EngineError("ETARGET_EXITED", "process " + p + " is exiting");
  if (st.tracer_pid != 0 && st.tracer_pid != getpid()) {
    throw EngineError("ETRACED", "process " + p + " is already traced by process " + std::to_string(st.tracer_pid) +
                                     " (a debugger or strace?); detach it and try again");
  }
}

void ThrowForErrno(int err, pid_t pid, const std::string& what) {
  const std::string p = std::to_string(pid);
  if (err == ESRCH || err == ENOENT) {
    RequireLiveProcess(pid);  // throws the precise reason when the process is gone
    throw EngineError("ETARGET_EXITED", "process " + p + " went away during " + what);
  }
  if (err == EPERM || err == EACCES) {
    RequireLiveProcess(pid);  // names another tracer when there is one
    std::string hint = "run as root or give hotpatch CAP_SYS_PTRACE";
    std::ifstream yama("/proc/sys/kernel/yama/ptrace_scope");
    int scope = 0;
    if (yama >> scope && scope > 0) {
      hint += "; kernel.yama.ptrace_scope is " + std::to_string(scope) +
              (scope >= 3 ? " (3 forbids all attaching until reboot)" : " (set it to 0, or use CAP_SYS_PTRACE)");
    }
    throw EngineError("EPERM_PTRACE", "not permitted to trace process " + p + " (" + what + "): " + hint);
  }
  throw EngineError("EINTERNAL", what + " on process " + p + " failed: " + std::strerror(err));
}

}  // namespace hotpatch
