#include "errno_codes.h"

#include <unistd.h>

#include <csignal>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <fstream>
#include <thread>

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
    } else if (line.rfind("SigPnd:", 0) == 0 || line.rfind("ShdPnd:", 0) == 0) {
      const unsigned long long pending = std::stoull(line.substr(7), nullptr, 16);
      if (pending & (1ULL << (SIGKILL - 1))) st.kill_pending = true;
    }
  }
  return st;
}

namespace {

// The process (thread group) a thread id belongs to, or 0 when it is gone.
pid_t TgidOf(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Tgid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
  }
  return 0;
}

// TracerPid names a thread. One of ours means an earlier transaction's threads are still being let
// go: that happens when the target was killed while we held it, and ends within moments.
ProcessStatus SettledStatus(pid_t pid) {
  ProcessStatus st = ReadProcessStatus(pid);
  for (int i = 0; i < 100 && st.exists && st.tracer_pid != 0 && TgidOf(st.tracer_pid) == getpid() &&
                  st.state != 'Z' && st.state != 'X';
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    st = ReadProcessStatus(pid);
  }
  return st;
}

}  // namespace

void RequireLiveProcess(pid_t pid) {
  const ProcessStatus st = SettledStatus(pid);
  const std::string p = std::to_string(pid);
  if (!st.exists) throw EngineError("ENOPROCESS", "no process " + p + " (it is not running, or not in this PID namespace)");
  if (st.state == 'Z') throw EngineError("EZOMBIE", "process " + p + " is a zombie: it has exited and waits for its parent to reap it");
  if (st.state == 'X') throw EngineError("ETARGET_EXITED", "process " + p + " is exiting");
  if (st.tracer_pid != 0 && TgidOf(st.tracer_pid) == getpid()) {
    if (st.kill_pending) throw EngineError("ETARGET_EXITED", "process " + p + " is exiting (killed)");
    throw EngineError("ETRACED", "process " + p + " is held by another operation of this hotpatch process; try again");
  }
  if (st.tracer_pid != 0) {
    throw EngineError("ETRACED", "process " + p + " is already traced by process " + std::to_string(st.tracer_pid) +
                                     " (a debugger or strace?); detach it and try again");
  }
}

bool HasExited(pid_t pid) {
  const ProcessStatus st = ReadProcessStatus(pid);
  return !st.exists || st.state == 'Z' || st.state == 'X';
}

void ThrowIfGone(pid_t pid, const std::string& during) {
  if (HasExited(pid)) throw EngineError("ETARGET_EXITED", "process " + std::to_string(pid) + " exited during " + during);
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
