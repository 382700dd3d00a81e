// StoppedProcess: every thread of a target held in a ptrace stop for the lifetime of the object.
//
// Construction seizes and interrupts all threads (re-listing /proc/PID/task until no new thread
// appears), the destructor detaches them all, so an early return or an exception can never leave
// the target stopped. All ptrace calls must come from the thread that attached: create, use and
// destroy one StoppedProcess on a single thread (one AsyncWorker::Execute).
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seccomp_check.h"
#include "target_memory.h"

namespace hotpatch {

using Clock = std::chrono::steady_clock;

struct ThreadState {
  pid_t tid;
  user_regs_struct regs;
  int pending_signal;  // a signal that arrived while we held the thread; re-delivered at detach
};

class StoppedProcess {
 public:
  // Throws ENOPROCESS, EZOMBIE, ETARGET_EXITED, EPERM_PTRACE, ETRACED or ESTOP_TIMEOUT; on a throw
  // every thread seized so far has been released.
  StoppedProcess(pid_t pid, Clock::time_point deadline);
  ~StoppedProcess();
  StoppedProcess(const StoppedProcess&) = delete;
  StoppedProcess& operator=(const StoppedProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::vector<ThreadState>& threads() const { return threads_; }
  const TargetMemory& memory() const { return *memory_; }

  // Runs one system call inside the target on its first thread and returns the raw result
  // (negative errno on failure). `stub` is the address of executable memory we may borrow.
  long InjectSyscall(uint64_t stub, long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0,
                     long a6 = 0);
  // Calls function `fn` of the target on its first thread (System V ABI, up to 4 integer
  // arguments) and returns its result. The caller must have made sure no stopped thread holds a
  // lock the function takes; should it still not return within a moment, the other threads are
  // let go (so a lock holder can finish) and the call is awaited a while longer.
  uint64_t InjectCall(uint64_t stub, uint64_t fn, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0);
  // An address in the first thread's stack, below its red zone, with room for `len` bytes: scratch
  // space for the arguments of injected calls (nothing of the target lives there while it is stopped).
  uint64_t Scratch(size_t len) const;

  // Makes `tid` the thread injected calls run on (instead of the first, the main thread).
  void UseForInjection(pid_t tid);
  // Lets every thread but the injecting one run again (they stay released until the end).
  void ReleaseOthers() noexcept;

  // Detaches every thread now (idempotent) and fixes the measured pause.
  void Resume();
  // Microseconds of the longest stop: from an interrupt of every thread to their resume (or to
  // now while still stopped).
  uint64_t PauseMicros() const;

  // Waiting inside one transaction (the threads stay ours while they run):
  // lets every held thread run on, delivering the signals that arrived while it was stopped;
  void ContinueAll();
  // or lets just `tids` run on, the others staying stopped (the stop goes on);
  void ContinueSome(const std::vector<pid_t>& tids);
  // waits until a running thread stops on a signal for which `ours(tid, regs)` holds; it stays
  // stopped with that signal suppressed, every other signal is delivered. nullopt at `deadline`;
  std::optional<pid_t> WaitForSignalStop(const std::function<bool(pid_t, const user_regs_struct&)>& ours,
                                         Clock::time_point deadline);
  // stops every thread again (seizing any new one) and re-reads their registers; a new stop
  // begins unless some threads stayed stopped.
  void StopAll(Clock::time_point deadline);
  // Whether every thread is in a stop (false between ContinueAll and StopAll).
  bool Held() const { return held_; }
  // Sets the registers a held thread resumes with.
  void SetRegisters(pid_t tid, const user_regs_struct& regs);
  // Forgets a signal that reached a thread while it was being stopped (one we sent ourselves).
  void DropPendingSignal(pid_t tid);

 private:
  void SeizeAll(Clock::time_point deadline);
  void WaitForStops(Clock::time_point deadline);
  void ReleaseAll() noexcept;
  void ReapDead(std::vector<pid_t> tids) noexcept;
  void ReadRegisters();
  void ContinueThreads(const std::vector<pid_t>* only);  // all when null
  void HandleRunningStop(pid_t tid, int status);
  uint64_t RunToTrap(user_regs_struct regs, uint64_t trap, Clock::time_point patience);

  struct Seized {
    pid_t tid;
    bool stopped;
    int pending_signal;
    bool running = false;  // let go by ContinueAll, still ours
  };

  pid_t pid_;
  std::vector<Seized> seized_;
  std::vector<ThreadState> threads_;
  std::unique_ptr<TargetMemory> memory_;
  std::unique_ptr<SeccompCheck> seccomp_;  // read on the first injected call
  Clock::time_point stop_start_;
  Clock::time_point stop_end_;
  Clock::duration longest_stop_{};
  bool held_ = true;  // every thread in a stop (not between ContinueAll and StopAll)
  bool released_ = false;
};

}  // namespace hotpatch
