#include "return_wait.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "../engine_error.h"

namespace hotpatch {
namespace {

constexpr auto kStopTimeout = std::chrono::seconds(2);
constexpr auto kCancelCheckEvery = std::chrono::milliseconds(50);
// How long the threads out of the way are held while the busy ones run to their landings.
constexpr auto kPark = std::chrono::microseconds(1000);
constexpr size_t kPadSize = 64;
constexpr size_t kSavedReturnAt = 48;  // offset in a pad of the original return address
// Signals whose default action is to ignore them, in order of preference.
constexpr int kQuietSignals[] = {SIGURG, SIGWINCH, SIGCHLD};

// One instruction of the pad, over a register of user_regs_struct with its x86 number.
struct Reg {
  unsigned long long user_regs_struct::*field;
  uint8_t num;
};
constexpr Reg kRax{&user_regs_struct::rax, 0}, kRcx{&user_regs_struct::rcx, 1}, kRdx{&user_regs_struct::rdx, 2},
    kRsi{&user_regs_struct::rsi, 6}, kRdi{&user_regs_struct::rdi, 7}, kR11{&user_regs_struct::r11, 11};

enum class Op { kPush, kMovImm, kSyscall, kPop, kJmpSaved };
struct Insn {
  Op op;
  Reg reg;
  uint32_t imm;
};

// The pad: every register the system call touches is saved on the stack below the returned-to
// frame (dead memory once the function has returned) and restored, flags included (sysret restores
// them from r11), so the caller finds exactly what the function left, even under -fipa-ra.
std::vector<Insn> PadProgram(pid_t tgid, pid_t tid, int signo) {
  return {{Op::kPush, kRax, 0},
          {Op::kPush, kRdi, 0},
          {Op::kPush, kRsi, 0},
          {Op::kPush, kRdx, 0},
          {Op::kPush, kRcx, 0},
          {Op::kPush, kR11, 0},
          {Op::kMovImm, kRax, SYS_tgkill},
          {Op::kMovImm, kRdi, static_cast<uint32_t>(tgid)},
          {Op::kMovImm, kRsi, static_cast<uint32_t>(tid)},
          {Op::kMovImm, kRdx, static_cast<uint32_t>(signo)},
          {Op::kSyscall, kRax, 0},
          {Op::kPop, kR11, 0},
          {Op::kPop, kRcx, 0},
          {Op::kPop, kRdx, 0},
          {Op::kPop, kRsi, 0},
          {Op::kPop, kRdi, 0},
          {Op::kPop, kRax, 0},
          {Op::kJmpSaved, kRax, 0}};
}

// Machine code of `program`, and where each instruction starts.
std::vector<uint8_t> Encode(const std::vector<Insn>& program, std::vector<size_t>* starts) {
  std::vector<uint8_t> code;
  for (const Insn& i : program) {
    starts->push_back(code.size());
    const uint8_t low = i.reg.num & 7;
    if (i.reg.num >= 8 && i.op != Op::kSyscall && i.op != Op::kJmpSaved) code.push_back(0x41);  // REX.B
    switch (i.op) {
      case Op::kPush: code.push_back(0x50 + low); break;
      case Op::kPop: code.push_back(0x58 + low); break;
      case Op::kMovImm:
        code.push_back(0xb8 + low);
        for (int b = 0; b < 4; ++b) code.push_back(static_cast<uint8_t>(i.imm >> (8 * b)));
        break;
      case Op::kSyscall: code.insert(code.end(), {0x0f, 0x05}); break;
      case Op::kJmpSaved: {  // jmp *disp32(%rip)
        const int32_t disp = static_cast<int32_t>(kSavedReturnAt - (code.size() + 6));
        code.insert(code.end(), {0xff, 0x25});
        for (int b = 0; b < 4; ++b) code.push_back(static_cast<uint8_t>(static_cast<uint32_t>(disp) >> (8 * b)));
        break;
      }
    }
  }
  return code;
}

// Where the thread stops when it lands: right after the pad's system call.
size_t LandingOffset() {
  std::vector<size_t> starts;
  const auto program = PadProgram(0, 0, 0);
  Encode(program, &starts);
  for (size_t i = 0; i < program.size(); ++i) {
    if (program[i].op == Op::kSyscall) return starts[i + 1];
  }
  return 0;
}

// The bits of a "SigXxx:\t<hex mask>" line of a /proc status file.
uint64_t SignalMask(const std::string& status_path, const std::string& field) {
  std::ifstream in(status_path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  }
  return ~uint64_t{0};  // unknown: every signal counts as taken
}

bool HasShadowStack(pid_t pid, pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("x86_Thread_features:", 0) == 0) return line.find("shstk") != std::string::npos;
  }
  return false;
}

// A quiet signal for `tid`: not caught by the process (a handler would run without us), not
// blocked by the thread (it would never report). 0 when there is none.
int QuietSignalFor(pid_t pid, pid_t tid, uint64_t caught) {
  const uint64_t blocked =
      SignalMask("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status", "SigBlk");
  for (int sig : kQuietSignals) {
    const uint64_t bit = uint64_t{1} << (sig - 1);
    if ((caught & bit) == 0 && (blocked & bit) == 0) return sig;
  }
  return 0;
}

class LandingPads {
 public:
  LandingPads(StoppedProcess& stopped, uint64_t stub, size_t pads)
      : stopped_(stopped), stub_(stub), len_((pads * kPadSize + 4095) & ~size_t{4095}), landing_(LandingOffset()) {
    const long r = stopped_.InjectSyscall(stub_, SYS_mmap, 0, static_cast<long>(len_), PROT_READ | PROT_EXEC,
                                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r < 0 && r > -4096) {
      throw EngineError("EINJECT", std::string("the target could not map landing pads: ") +
                                       std::strerror(static_cast<int>(-r)));
    }
    base_ = static_cast<uint64_t>(r);
  }
  ~LandingPads() {
    if (base_ == 0) return;
    try {
      if (!stopped_.Held()) stopped_.StopAll(Clock::now() + kStopTimeout);
      Disarm();
    } catch (...) {
      // The target is gone, or would not stop: the pads stay, and stay harmless (see the header).
    }
  }
  LandingPads(const LandingPads&) = delete;
  LandingPads& operator=(const LandingPads&) = delete;

  bool Armed(uint64_t slot) const { return overlay_.count(slot) != 0; }
  const std::map<uint64_t, uint64_t>& overlay() const { return overlay_; }

  // Writes a pad for `b`'s thread and points its outermost busy frame's return address at it.
  bool Arm(const BusyThread& b, int signo) {
    if ((used_ + 1) * kPadSize > len_) return false;
    const uint64_t pad = base_ + used_++ * kPadSize;
    std::vector<size_t> starts;
    std::vector<uint8_t> code = Encode(PadProgram(stopped_.pid(), b.tid, signo), &starts);
    code.resize(kPadSize, 0xcc);
    std::memcpy(code.data() + kSavedReturnAt, &b.return_to, 8);
    stopped_.memory().Write(pad, code);
    stopped_.memory().Write(b.ra_slot, &pad, 8);
    live_.push_back({b.tid, b.ra_slot, b.return_to, pad, signo, false});
    overlay_[b.ra_slot] = b.return_to;
    return true;
  }

  bool IsLanding(pid_t tid, const user_regs_struct& regs) const {
    for (const Hijack& h : live_) {
      if (h.tid == tid && regs.rip == h.pad + landing_) return true;
    }
    return false;
  }

  // Every held thread inside a pad goes on as if it had run the rest of it (without the signal),
  // and every hijack whose slot no longer holds its pad is forgotten (the frame returned, or an
  // exception or longjmp skipped it).
  void Settle() {
    for (const ThreadState& t : stopped_.threads()) {
      if (t.regs.rip < base_ || t.regs.rip >= base_ + used_ * kPadSize) continue;
      const uint64_t pad = t.regs.rip - (t.regs.rip - base_) % kPadSize;
      for (Hijack& h : live_) {
        if (h.pad != pad) continue;
        if (t.regs.rip == pad + landing_ && t.pending_signal == h.signo) stopped_.DropPendingSignal(t.tid);
        stopped_.SetRegisters(t.tid, FinishPad(t.regs, h));
        h.returned = true;
      }
    }
    for (auto it = live_.begin(); it != live_.end();) {
      uint64_t now = 0;
      stopped_.memory().ReadSome(it->slot, reinterpret_cast<uint8_t*>(&now), 8);
      if (now == it->pad && !it->returned) {
        ++it;
        continue;
      }
      overlay_.erase(it->slot);
      it = live_.erase(it);
    }
  }

  // Every thread held: puts back every return address still hijacked, and unmaps the pads.
  void Disarm() {
    Settle();
    for (const Hijack& h : live_) stopped_.memory().Write(h.slot, &h.orig, 8);
    live_.clear();
    overlay_.clear();
    const uint64_t base = base_;
    base_ = 0;
    stopped_.InjectSyscall(stub_, SYS_munmap, static_cast<long>(base), static_cast<long>(len_));
  }

 private:
  struct Hijack {
    pid_t tid;
    uint64_t slot;
    uint64_t orig;
    uint64_t pad;
    int signo;
    bool returned = false;  // its thread came through the pad: the slot is dead stack now
  };

  // The registers after the pad's last instruction, from a thread stopped anywhere in it.
  user_regs_struct FinishPad(user_regs_struct regs, const Hijack& h) const {
    std::vector<size_t> starts;
    const auto program = PadProgram(stopped_.pid(), h.tid, h.signo);
    Encode(program, &starts);
    size_t i = 0;
    while (i < starts.size() && h.pad + starts[i] != regs.rip) ++i;
    if (i == starts.size()) throw EngineError("EINTERNAL", "a thread stopped inside a landing pad instruction");
    std::map<uint64_t, uint64_t> pushed;  // the stack as the pad would have written it
    for (; i < program.size(); ++i) {
      const Insn& in = program[i];
      switch (in.op) {
        case Op::kPush:
          regs.rsp -= 8;
          pushed[regs.rsp] = regs.*in.reg.field;
          break;
        case Op::kPop: {
          uint64_t v = 0;
          if (const auto it = pushed.find(regs.rsp); it != pushed.end()) v = it->second;
          else stopped_.memory().ReadSome(regs.rsp, reinterpret_cast<uint8_t*>(&v), 8);
          regs.*in.reg.field = v;
          regs.rsp += 8;
          break;
        }
        case Op::kMovImm: regs.*in.reg.field = in.imm; break;
        case Op::kSyscall: break;  // the signal is what we skip
        case Op::kJmpSaved: regs.rip = h.orig; break;
      }
    }
    return regs;
  }

  StoppedProcess& stopped_;
  uint64_t stub_;
  size_t len_;
  size_t landing_;
  uint64_t base_ = 0;
  size_t used_ = 0;
  std::vector<Hijack> live_;
  std::map<uint64_t, uint64_t> overlay_;  // hijacked slot -> the return address it held
};

// The quiet signal each busy thread can land with, or nullopt when some thread cannot wait on a
// pad: its hit came from a conservative scan (no exact slot), it has a CET shadow stack (a return
// to another address than the call's kills it), no quiet signal is free, or an exception or a
// thread cancellation could unwind through the hijacked frame (the pad has no CFI).
std::optional<std::map<pid_t, int>> LandingSignals(pid_t pid, ExactCheck& check, const std::vector<BusyThread>& busy) {
  if (check.unwinder() == nullptr || check.unwinder()->HasCxxUnwinder()) return std::nullopt;
  const uint64_t caught = SignalMask("/proc/" + std::to_string(pid) + "/status", "SigCgt");
  std::map<pid_t, int> signals;
  for (const BusyThread& b : busy) {
    if (b.ra_slot == 0 || HasShadowStack(pid, b.tid)) return std::nullopt;
    const int sig = QuietSignalFor(pid, b.tid, caught);
    if (sig == 0) return std::nullopt;
    signals[b.tid] = sig;
  }
  return signals;
}

const std::map<uint64_t, uint64_t> kNoOverlay;

// Lets only the `busy` threads run, each until it lands, for at most `limit`: when every one
// lands, every thread is outside the function at once (the others have not moved). Returns the
// threads that must be judged again (landed ones and new ones), or nullopt when some did not land
// in time (then every thread is stopped again).
std::optional<std::vector<pid_t>> Park(StoppedProcess& stopped, const LandingPads& pads,
                                       const std::vector<BusyThread>& busy, Clock::time_point limit) {
  std::vector<pid_t> running, before;
  for (const BusyThread& b : busy) running.push_back(b.tid);
  for (const ThreadState& t : stopped.threads()) before.push_back(t.tid);
  std::vector<pid_t> judge = running;
  stopped.ContinueSome(running);
  const auto landed = [&pads](pid_t tid, const user_regs_struct& regs) { return pads.IsLanding(tid, regs); };
  while (!running.empty()) {
    const auto tid = stopped.WaitForSignalStop(landed, limit);
    if (!tid) break;
    running.erase(std::remove(running.begin(), running.end(), *tid), running.end());
  }
  stopped.StopAll(Clock::now() + kStopTimeout);  // the stop goes on; registers read afresh
  if (!running.empty()) return std::nullopt;
  for (const ThreadState& t : stopped.threads()) {
    if (std::find(before.begin(), before.end(), t.tid) == before.end()) judge.push_back(t.tid);
  }
  return judge;
}

}  // namespace

std::optional<Conflict> SwitchWhenFree(StoppedProcess& stopped, std::vector<Mapping>& maps, ExactCheck& check,
                                       uint64_t stub, Clock::time_point deadline, bool may_wait,
                                       const std::atomic<int32_t>* cancelled, const std::function<void()>& do_switch) {
  const auto is_cancelled = [cancelled] { return cancelled != nullptr && cancelled->load(std::memory_order_relaxed) != 0; };
  std::optional<LandingPads> pads;
  std::optional<std::vector<pid_t>> only;  // after a whole park: the threads that moved
  for (;;) {
    const std::vector<BusyThread> busy =
        check.Busy(stopped, maps, pads ? pads->overlay() : kNoOverlay, only ? &*only : nullptr);
    if (busy.empty()) {
      if (pads) pads->Disarm();
      do_switch();
      return std::nullopt;
    }
    const bool wait = may_wait && Clock::now() < deadline && !is_cancelled();
    const auto signals = wait ? LandingSignals(stopped.pid(), check, busy) : std::nullopt;
    if (!signals) {
      if (pads) pads->Disarm();
      return ExactCheck::Combine(busy);
    }
    if (!pads) pads.emplace(stopped, stub, std::max<size_t>(64, 4 * stopped.threads().size()));
    for (const BusyThread& b : busy) {
      if (pads->Armed(b.ra_slot)) continue;
      if (!pads->Arm(b, signals->at(b.tid))) {
        pads->Disarm();
        return ExactCheck::Combine(busy);
      }
    }
    // A short function is left within microseconds: hold the others meanwhile.
    only = Park(stopped, *pads, busy, std::min(deadline, Clock::now() + kPark));
    pads->Settle();
    if (only) continue;
    // A long one: everyone runs until one lands (in slices, to notice a cancellation).
    stopped.ContinueAll();
    const LandingPads& p = *pads;
    const auto landed = [&p](pid_t tid, const user_regs_struct& regs) { return p.IsLanding(tid, regs); };
    while (Clock::now() < deadline && !is_cancelled() &&
           !stopped.WaitForSignalStop(landed, std::min(deadline, Clock::now() + kCancelCheckEvery))) {
    }
    stopped.StopAll(Clock::now() + kStopTimeout);
    pads->Settle();
  }
}

}  // namespace hotpatch
