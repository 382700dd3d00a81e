#include "stopped_process.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "../engine_error.h"
#include "errno_codes.h"
#include "target_memory.h"

namespace hotpatch {
namespace {

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

std::vector<pid_t> ListThreads(pid_t pid) {
  std::unique_ptr<DIR, DirCloser> dir(opendir(("/proc/" + std::to_string(pid) + "/task").c_str()));
  if (!dir) ThrowForErrno(errno, pid, "listing threads");
  std::vector<pid_t> tids;
  while (dirent* e = readdir(dir.get())) {
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') tids.push_back(static_cast<pid_t>(std::atol(e->d_name)));
  }
  return tids;
}

void ShortSleep(long ns) {
  timespec ts{0, ns};
  nanosleep(&ts, nullptr);
}

// Whether `tid` sits in a ptrace stop. A target that is also a child of our own process reports its
// stops to every thread of our thread group, and Node's main thread (libuv's SIGCHLD handler) waits
// for its children: it can take a stop report before we do. A thread in a ptrace stop whose report
// waitpid does not give us has been reported to another thread; waiting for it would never end.
bool InTraceStop(pid_t pid, pid_t tid) {
  // The task/ path: its stat is the thread's own, not summed over the group under the group's locks.
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(in, line);
  const auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 't';
}

// How often a wait with no report looks for a stop reported to another thread: rarely, since it is
// rare and reading /proc while many threads stop slows their stop (16 threads: 0.56 ms → 3.7 ms at
// every 1 ms).
constexpr auto kStolenCheckEvery = std::chrono::milliseconds(20);

}  // namespace

StoppedProcess::StoppedProcess(pid_t pid, Clock::time_point deadline) : pid_(pid) {
  RequireLiveProcess(pid);
  // Our polling sleeps are tens of microseconds; without this the kernel may stretch each to 50 µs+.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  stop_start_ = Clock::now();
  try {
    // A thread created while we were seizing the others shows up in the next listing; once every
    // listed thread is stopped no new one can appear, so one listing that adds nothing ends the loop.
    for (;;) {
      const size_t before = seized_.size();
      SeizeAll(deadline);
      WaitForStops(deadline);
      if (seized_.size() == before) break;
    }
    if (seized_.empty()) throw EngineError("ETARGET_EXITED", "process " + std::to_string(pid) + " exited");
    ReadRegisters();
    memory_ = std::make_unique<TargetMemory>(pid);
  } catch (...) {
    ReleaseAll();
    throw;
  }
}

StoppedProcess::~StoppedProcess() { ReleaseAll(); }

void StoppedProcess::ReadRegisters() {
  threads_.clear();
  for (const Seized& s : seized_) {
    if (s.tid < 0) continue;
    ThreadState t{s.tid, {}, s.pending_signal};
    if (ptrace(PTRACE_GETREGS, s.tid, nullptr, &t.regs) != 0) ThrowForErrno(errno, pid_, "reading registers");
    threads_.push_back(t);
  }
  // The thread we inject calls into should be the main one when it still exists.
  std::stable_partition(threads_.begin(), threads_.end(), [this](const ThreadState& t) { return t.tid == pid_; });
}

void StoppedProcess::ContinueAll() {
  longest_stop_ = std::max(longest_stop_, Clock::now() - stop_start_);
  held_ = false;
  ContinueThreads(nullptr);
}

void StoppedProcess::ContinueSome(const std::vector<pid_t>& tids) { ContinueThreads(&tids); }

void StoppedProcess::ContinueThreads(const std::vector<pid_t>* only) {
  for (Seized& s : seized_) {
    if (s.tid < 0 || !s.stopped) continue;
    if (only != nullptr && std::find(only->begin(), only->end(), s.tid) == only->end()) continue;
    if (ptrace(PTRACE_CONT, s.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(s.pending_signal))) != 0) {
      continue;  // died while held: the wait notices it
    }
    s.stopped = false;
    s.running = true;
    s.pending_signal = 0;
  }
}

// A stop of a thread we let run: a signal is delivered on (the wait is ours, not the target's), a
// group stop (SIGSTOP from someone) is kept with PTRACE_LISTEN, a late interrupt is let go.
void StoppedProcess::HandleRunningStop(pid_t tid, int status) {
  const int sig = WSTOPSIG(status);
  const int event = status >> 16;
  if (event == PTRACE_EVENT_STOP && (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)) {
    ptrace(PTRACE_LISTEN, tid, nullptr, nullptr);
  } else {
    ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(event == 0 ? sig : 0)));
  }
}

std::optional<pid_t> StoppedProcess::WaitForSignalStop(const std::function<bool(pid_t, const user_regs_struct&)>& ours,
                                                       Clock::time_point deadline) {
  long backoff_ns = 20'000;  // a landing should be seen within a millisecond, without spinning a CPU
  auto next_gone_check = Clock::now() + std::chrono::milliseconds(10);
  // Reports taken by another thread of ours (see InTraceStop) are looked for more often than
  // during a stop: here the threads run, and the switch should follow a landing within 10 ms.
  auto next_stolen_check = Clock::now() + std::chrono::milliseconds(4);
  for (;;) {
    const bool look_for_stolen = Clock::now() > next_stolen_check;
    if (look_for_stolen) next_stolen_check = Clock::now() + std::chrono::milliseconds(4);
    for (auto it = seized_.begin(); it != seized_.end();) {
      if (!it->running) {
        ++it;
        continue;
      }
      int status = 0;
      const pid_t r = waitpid(it->tid, &status, __WALL | WNOHANG);
      if (r == 0 && look_for_stolen && InTraceStop(pid_, it->tid)) {
        user_regs_struct regs;
        siginfo_t si{};
        if (ptrace(PTRACE_GETREGS, it->tid, nullptr, &regs) == 0 && ours(it->tid, regs)) {
          it->running = false;
          it->stopped = true;
          return it->tid;
        }
        if (ptrace(PTRACE_GETSIGINFO, it->tid, nullptr, &si) != 0) {
          ptrace(PTRACE_LISTEN, it->tid, nullptr, nullptr);  // a group stop
        } else {
          const bool event = (si.si_code >> 8) != 0;
          ptrace(PTRACE_CONT, it->tid, nullptr, reinterpret_cast<void*>(static_cast<long>(event ? 0 : si.si_signo)));
        }
        ++it;
        continue;
      }
      if (r == 0) {
        ++it;
        continue;
      }
      if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
        it = seized_.erase(it);
        continue;
      }
      user_regs_struct regs;
      if ((status >> 16) == 0 && ptrace(PTRACE_GETREGS, it->tid, nullptr, &regs) == 0 && ours(it->tid, regs)) {
        it->running = false;
        it->stopped = true;
        return it->tid;
      }
      HandleRunningStop(it->tid, status);
      ++it;
    }
    if (seized_.empty() || Clock::now() > next_gone_check) {
      ThrowIfGone(pid_, "waiting for a function to return");
      next_gone_check = Clock::now() + std::chrono::milliseconds(10);
    }
    if (Clock::now() > deadline) return std::nullopt;
    ShortSleep(backoff_ns);
    backoff_ns = std::min(backoff_ns * 2, 500'000L);
  }
}

void StoppedProcess::StopAll(Clock::time_point deadline) {
  if (!held_) stop_start_ = Clock::now();
  for (Seized& s : seized_) {
    if (!s.running) continue;
    s.running = false;
    if (ptrace(PTRACE_INTERRUPT, s.tid, nullptr, nullptr) != 0 && errno != ESRCH) {
      ThrowForErrno(errno, pid_, "PTRACE_INTERRUPT of thread " + std::to_string(s.tid));
    }
  }
  for (;;) {
    const size_t before = seized_.size();
    SeizeAll(deadline);
    WaitForStops(deadline);
    if (seized_.size() == before) break;
  }
  if (seized_.empty()) throw EngineError("ETARGET_EXITED", "process " + std::to_string(pid_) + " exited");
  ReadRegisters();
  held_ = true;
}

void StoppedProcess::DropPendingSignal(pid_t tid) {
  for (Seized& s : seized_) {
    if (s.tid == tid) s.pending_signal = 0;
  }
  for (ThreadState& t : threads_) {
    if (t.tid == tid) t.pending_signal = 0;
  }
}

void StoppedProcess::SetRegisters(pid_t tid, const user_regs_struct& regs) {
  if (ptrace(PTRACE_SETREGS, tid, nullptr, &regs) != 0) ThrowForErrno(errno, pid_, "PTRACE_SETREGS");
  for (ThreadState& t : threads_) {
    if (t.tid == tid) t.regs = regs;
  }
}

void StoppedProcess::SeizeAll(Clock::time_point deadline) {
  for (pid_t tid : ListThreads(pid_)) {
    if (std::any_of(seized_.begin(), seized_.end(), [tid](const Seized& s) { return s.tid == tid; })) continue;
    if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) {
      if (errno == ESRCH) continue;  // the thread exited between listing and seizing
      ThrowForErrno(errno, pid_, "PTRACE_SEIZE of thread " + std::to_string(tid));
    }
    seized_.push_back({tid, false, 0});
    if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0 && errno != ESRCH) {
      ThrowForErrno(errno, pid_, "PTRACE_INTERRUPT of thread " + std::to_string(tid));
    }
  }
  if (Clock::now() > deadline) {
    throw EngineError("ESTOP_TIMEOUT", "could not stop every thread of process " + std::to_string(pid_) + " in time");
  }
}

void StoppedProcess::WaitForStops(Clock::time_point deadline) {
  // Sleep between polls, starting very short: every thread needs a CPU to reach its stop, and a
  // tracer that spins or yields takes one away from them (measured on 2 cores: 16-thread stops
  // took 4 ms with a spinning tracer, 0.4 ms with a sleeping one).
  long backoff_ns = 2'000;
  auto next_gone_check = Clock::now() + std::chrono::milliseconds(10);
  auto next_stolen_check = Clock::now() + kStolenCheckEvery;
  for (;;) {
    bool waiting = false;
    const bool look_for_stolen = Clock::now() > next_stolen_check;
    if (look_for_stolen) next_stolen_check = Clock::now() + kStolenCheckEvery;
    for (auto it = seized_.begin(); it != seized_.end();) {
      if (it->stopped) {
        ++it;
        continue;
      }
      int status = 0;
      const pid_t r = waitpid(it->tid, &status, __WALL | WNOHANG);
      if (r == 0) {
        // Its report went to another thread of ours: it is stopped (by our interrupt, as far as we can tell).
        if (look_for_stolen && InTraceStop(pid_, it->tid)) it->stopped = true;
        else waiting = true;
        ++it;
        continue;
      }
      if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
        it = seized_.erase(it);  // the thread is gone; a gone process is noticed when none is left
        continue;
      }
      // An interrupt (or group) stop carries PTRACE_EVENT_STOP; anything else is a signal that
      // reached the thread first: keep it and deliver it when we let go.
      const bool event_stop = (status >> 16) == PTRACE_EVENT_STOP;
      if (!event_stop) it->pending_signal = WSTOPSIG(status);
      it->stopped = true;
      ++it;
    }
    if (!waiting) return;
    // A killed process's leader reports nothing until its other threads are gone: notice the exit.
    if (Clock::now() > next_gone_check) {
      ThrowIfGone(pid_, "stopping its threads");
      next_gone_check = Clock::now() + std::chrono::milliseconds(10);
    }
    if (Clock::now() > deadline) {
      ThrowIfGone(pid_, "stopping its threads");
      std::string stuck;
      for (const Seized& s : seized_) {
        if (!s.stopped) stuck.append(" ").append(std::to_string(s.tid));
      }
      throw EngineError("ESTOP_TIMEOUT", "threads" + stuck + " of process " + std::to_string(pid_) +
                                             " did not stop in time (uninterruptible sleep?)");
    }
    ShortSleep(backoff_ns);
    backoff_ns = std::min(backoff_ns * 2, 200'000L);
  }
}

void StoppedProcess::ReleaseAll() noexcept {
  if (released_) return;
  released_ = true;
  std::vector<pid_t> dead;
  for (Seized& s : seized_) {
    if (s.tid < 0) continue;  // already let go by ReleaseOthers
    if (s.running) ptrace(PTRACE_INTERRUPT, s.tid, nullptr, nullptr);  // detaching needs it stopped
    if (!s.stopped) {
      // PTRACE_DETACH needs a stopped tracee: wait (briefly) for the interrupt we sent to land.
      for (int i = 0; i < 20000 && !s.stopped; ++i) {
        int status = 0;
        const pid_t r = waitpid(s.tid, &status, __WALL | WNOHANG);
        if (r < 0 || (r > 0 && (WIFEXITED(status) || WIFSIGNALED(status)))) break;
        if (r > 0) {
          s.stopped = true;
          if ((status >> 16) != PTRACE_EVENT_STOP) s.pending_signal = WSTOPSIG(status);
        } else if (InTraceStop(pid_, s.tid)) {
          s.stopped = true;  // reported to another thread of ours
        } else {
          ShortSleep(50'000);
        }
      }
    }
    if (ptrace(PTRACE_DETACH, s.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(s.pending_signal))) != 0 &&
        errno == ESRCH) {
      dead.push_back(s.tid);
    }
  }
  stop_end_ = Clock::now();
  ReapDead(std::move(dead));
}

// A thread that died while we held it cannot be detached (ESRCH), and until its tracer reaps it
// the kernel withholds its exit from the real parent, which would never see its child end (a
// supervisor would never restart the service). So reap each one; a leader is reported only after
// its other threads, hence one loop over all of them. A thread that stops instead is detached.
void StoppedProcess::ReapDead(std::vector<pid_t> tids) noexcept {
  const auto give_up = Clock::now() + std::chrono::seconds(2);
  while (!tids.empty() && Clock::now() < give_up) {
    for (auto it = tids.begin(); it != tids.end();) {
      int status = 0;
      const pid_t r = waitpid(*it, &status, __WALL | WNOHANG);
      if (r == 0) {
        ++it;
        continue;
      }
      if (r > 0 && WIFSTOPPED(status) && ptrace(PTRACE_DETACH, *it, nullptr, nullptr) != 0 && errno == ESRCH) {
        ++it;  // stopped on its way out (PTRACE_EVENT_EXIT): its exit comes next
        continue;
      }
      it = tids.erase(it);  // reaped, detached, or no longer ours (ECHILD)
    }
    if (!tids.empty()) ShortSleep(200'000);
  }
}

void StoppedProcess::UseForInjection(pid_t tid) {
  auto it = std::find_if(threads_.begin(), threads_.end(), [tid](const ThreadState& t) { return t.tid == tid; });
  if (it == threads_.end()) throw EngineError("EINTERNAL", "thread " + std::to_string(tid) + " is not held");
  std::iter_swap(threads_.begin(), it);
}

void StoppedProcess::ReleaseOthers() noexcept {
  // Keeps the first thread (the one running an injected call); lets every other one go.
  for (Seized& s : seized_) {
    if (s.tid == threads_.front().tid || s.tid < 0 || !s.stopped) continue;
    if (ptrace(PTRACE_DETACH, s.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(s.pending_signal))) != 0 &&
        errno == ESRCH) {
      continue;  // died while held: ReleaseAll reaps it
    }
    s.stopped = false;
    s.tid = -s.tid;  // released: ReleaseAll skips it
  }
}

void StoppedProcess::Resume() { ReleaseAll(); }

uint64_t StoppedProcess::PauseMicros() const {
  const auto end = released_ ? stop_end_ : Clock::now();
  const auto longest = held_ ? std::max(longest_stop_, end - stop_start_) : longest_stop_;
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(longest).count());
}

uint64_t StoppedProcess::Scratch(size_t len) const {
  // 128-byte red zone below rsp belongs to the interrupted leaf function; go well past it.
  const uint64_t rsp = threads_.front().regs.rsp;
  return ((rsp - 512 - len) & ~uint64_t{15});
}

// Runs the first thread from `regs` until it stops at the int3 at `trap` (then rip = trap + 1),
// restores its registers and returns the rax it ended with.
uint64_t StoppedProcess::RunToTrap(user_regs_struct regs, uint64_t trap, Clock::time_point patience) {
  ThreadState& t = threads_.front();
  // orig_rax = -1 keeps the kernel from "restarting" a system call the thread was interrupted in
  // when we resume it elsewhere; the real orig_rax comes back with the saved registers.
  regs.orig_rax = static_cast<unsigned long long>(-1);
  std::string failure;
  uint64_t result = 0;
  if (ptrace(PTRACE_SETREGS, t.tid, nullptr, &regs) != 0) {
    failure = "PTRACE_SETREGS";
  } else if (ptrace(PTRACE_CONT, t.tid, nullptr, nullptr) != 0) {
    failure = "PTRACE_CONT";
  } else {
    bool others_released = false;
    long backoff_ns = 2'000;  // the target's thread needs a CPU to run the call: sleep, don't spin
    auto next_gone_check = Clock::now() + std::chrono::milliseconds(10);
    auto next_stolen_check = Clock::now() + kStolenCheckEvery;
    for (;;) {
      int status = 0;
      pid_t r = waitpid(t.tid, &status, __WALL | WNOHANG);
      if (r == 0 && Clock::now() > next_stolen_check) {
        next_stolen_check = Clock::now() + kStolenCheckEvery;
        if (InTraceStop(pid_, t.tid)) {
          // Its report went to another thread of ours: rebuild it from the thread itself.
          user_regs_struct now;
          siginfo_t si{};
          if (ptrace(PTRACE_GETREGS, t.tid, nullptr, &now) == 0 && now.rip == trap + 1) {
            status = (SIGTRAP << 8) | 0x7f;
          } else if (ptrace(PTRACE_GETSIGINFO, t.tid, nullptr, &si) == 0) {
            status = (si.si_signo << 8) | 0x7f;
          } else {
            status = (SIGTRAP << 8) | 0x7f | (PTRACE_EVENT_STOP << 16);
          }
          r = t.tid;
        }
      }
      if (r == 0) {
        // A killed leader reports its exit only after its other threads are reaped, which happens
        // when we let go: look at the thread itself instead of waiting for that report.
        if (Clock::now() > next_gone_check) {
          if (HasExited(t.tid)) {
            throw EngineError("ETARGET_EXITED",
                              "process " + std::to_string(pid_) + " exited during an injected call");
          }
          next_gone_check = Clock::now() + std::chrono::milliseconds(10);
        }
        if (!others_released && Clock::now() > patience) {
          ReleaseOthers();  // a lock holder among them can now finish, and so can our call
          others_released = true;
        }
        ShortSleep(others_released ? 1'000'000 : backoff_ns);
        backoff_ns = std::min(backoff_ns * 2, 100'000L);
        continue;
      }
      if (r < 0 || !WIFSTOPPED(status)) {
        throw EngineError("ETARGET_EXITED", "process " + std::to_string(pid_) + " exited during an injected call");
      }
      const int sig = WSTOPSIG(status);
      if (sig == SIGTRAP && (status >> 16) == 0) break;  // our int3
      if ((status >> 16) == 0) t.pending_signal = sig;  // someone else's signal: deliver it later
      if (ptrace(PTRACE_CONT, t.tid, nullptr, nullptr) != 0) {
        failure = "PTRACE_CONT";
        break;
      }
    }
    if (failure.empty()) {
      user_regs_struct after;
      if (ptrace(PTRACE_GETREGS, t.tid, nullptr, &after) != 0) failure = "PTRACE_GETREGS";
      else if (after.rip != trap + 1) failure = "an injected call that stopped at an unexpected place";
      result = after.rax;
    }
  }
  const int err = errno;
  if (ptrace(PTRACE_SETREGS, t.tid, nullptr, &t.regs) != 0 && failure.empty()) failure = "PTRACE_SETREGS";
  if (!failure.empty()) ThrowForErrno(err, pid_, failure);
  return result;
}

long StoppedProcess::InjectSyscall(uint64_t stub, long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  ThreadState& t = threads_.front();
  if (!seccomp_) seccomp_ = std::make_unique<SeccompCheck>(t.tid);
  seccomp_->RequireAllowed(nr, {static_cast<uint64_t>(a1), static_cast<uint64_t>(a2), static_cast<uint64_t>(a3),
                                static_cast<uint64_t>(a4), static_cast<uint64_t>(a5), static_cast<uint64_t>(a6)},
                           stub + 2);
  // `syscall; int3` over borrowed code: every thread is stopped, so nobody can execute it meanwhile.
  static const uint8_t kStub[] = {0x0f, 0x05, 0xcc};
  const std::vector<uint8_t> saved = memory_->Read(stub, sizeof kStub);
  memory_->Write(stub, kStub, sizeof kStub);
  user_regs_struct regs = t.regs;
  regs.rip = stub;
  regs.rax = static_cast<unsigned long long>(nr);
  regs.rdi = static_cast<unsigned long long>(a1);
  regs.rsi = static_cast<unsigned long long>(a2);
  regs.rdx = static_cast<unsigned long long>(a3);
  regs.r10 = static_cast<unsigned long long>(a4);
  regs.r8 = static_cast<unsigned long long>(a5);
  regs.r9 = static_cast<unsigned long long>(a6);
  uint64_t result = 0;
  try {
    result = RunToTrap(regs, stub + 2, Clock::now() + std::chrono::seconds(5));
  } catch (...) {
    memory_->Write(stub, saved);
    throw;
  }
  memory_->Write(stub, saved);
  return static_cast<long>(result);
}

uint64_t StoppedProcess::InjectCall(uint64_t stub, uint64_t fn, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4) {
  ThreadState& t = threads_.front();
  // The function returns to an int3 we put at `stub`. Its frame goes well below anything the
  // thread or our scratch arguments use, 16-byte aligned before the pushed return address (ABI).
  static const uint8_t kTrap[] = {0xcc};
  const std::vector<uint8_t> saved = memory_->Read(stub, 1);
  memory_->Write(stub, kTrap, 1);
  user_regs_struct regs = t.regs;
  const uint64_t rsp = ((t.regs.rsp - 16384) & ~uint64_t{15}) - 8;
  memory_->Write(rsp, &stub, sizeof stub);
  regs.rsp = rsp;
  regs.rip = fn;
  regs.rdi = a1;
  regs.rsi = a2;
  regs.rdx = a3;
  regs.rcx = a4;
  regs.rax = 0;
  uint64_t result = 0;
  try {
    result = RunToTrap(regs, stub, Clock::now() + std::chrono::milliseconds(200));
  } catch (...) {
    memory_->Write(stub, saved);
    throw;
  }
  memory_->Write(stub, saved);
  return result;
}

}  // namespace hotpatch
