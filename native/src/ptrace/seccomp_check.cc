#include "seccomp_check.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>

#include "../engine_error.h"

namespace hotpatch {
namespace {

constexpr int kGetFilter = 0x420c;  // PTRACE_SECCOMP_GET_FILTER

int SeccompMode(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Seccomp:", 0) == 0) return std::stoi(line.substr(8));
  }
  return 0;
}

struct Data {
  int32_t nr;
  uint32_t arch;
  uint64_t ip;
  uint64_t args[6];
};

// Runs one classic-BPF seccomp program; returns its SECCOMP_RET_* value, or KILL for anything
// malformed (the kernel would not have accepted it, so it cannot happen, but never guess "allow").
uint32_t Run(const std::vector<sock_filter>& prog, const Data& d) {
  uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
  const auto* bytes = reinterpret_cast<const uint8_t*>(&d);
  for (size_t pc = 0; pc < prog.size(); ++pc) {
    const sock_filter& i = prog[pc];
    const uint32_t src = BPF_SRC(i.code) == BPF_X ? x : i.k;
    switch (BPF_CLASS(i.code)) {
      case BPF_LD:
        if (BPF_MODE(i.code) == BPF_ABS && BPF_SIZE(i.code) == BPF_W && i.k + 4 <= sizeof d) std::memcpy(&a, bytes + i.k, 4);
        else if (BPF_MODE(i.code) == BPF_IMM) a = i.k;
        else if (BPF_MODE(i.code) == BPF_MEM && i.k < BPF_MEMWORDS) a = mem[i.k];
        else if (BPF_MODE(i.code) == BPF_LEN) a = sizeof d;
        else return SECCOMP_RET_KILL_PROCESS;
        break;
      case BPF_LDX:
        if (BPF_MODE(i.code) == BPF_IMM) x = i.k;
        else if (BPF_MODE(i.code) == BPF_MEM && i.k < BPF_MEMWORDS) x = mem[i.k];
        else if (BPF_MODE(i.code) == BPF_LEN) x = sizeof d;
        else return SECCOMP_RET_KILL_PROCESS;
        break;
      case BPF_ST:
        if (i.k >= BPF_MEMWORDS) return SECCOMP_RET_KILL_PROCESS;
        mem[i.k] = a;
        break;
      case BPF_STX:
        if (i.k >= BPF_MEMWORDS) return SECCOMP_RET_KILL_PROCESS;
        mem[i.k] = x;
        break;
      case BPF_ALU:
        switch (BPF_OP(i.code)) {
          case BPF_ADD: a += src; break;
          case BPF_SUB: a -= src; break;
          case BPF_MUL: a *= src; break;
          case BPF_DIV: if (src == 0) return SECCOMP_RET_KILL_PROCESS; a /= src; break;
          case BPF_MOD: if (src == 0) return SECCOMP_RET_KILL_PROCESS; a %= src; break;
          case BPF_OR: a |= src; break;
          case BPF_AND: a &= src; break;
          case BPF_XOR: a ^= src; break;
          case BPF_LSH: a = src >= 32 ? 0 : a << src; break;
          case BPF_RSH: a = src >= 32 ? 0 : a >> src; break;
          case BPF_NEG: a = -a; break;
          default: return SECCOMP_RET_KILL_PROCESS;
        }
        break;
      case BPF_JMP: {
        if (BPF_OP(i.code) == BPF_JA) {
          pc += i.k;
          break;
        }
        bool taken;
        switch (BPF_OP(i.code)) {
          case BPF_JEQ: taken = a == src; break;
          case BPF_JGT: taken = a > src; break;
          case BPF_JGE: taken = a >= src; break;
          case BPF_JSET: taken = (a & src) != 0; break;
          default: return SECCOMP_RET_KILL_PROCESS;
        }
        pc += taken ? i.jt : i.jf;
        break;
      }
      case BPF_RET:
        return BPF_RVAL(i.code) == BPF_A ? a : i.k;
      case BPF_MISC:
        if (BPF_MISCOP(i.code) == BPF_TAX) x = a;
        else a = x;
        break;
      default:
        return SECCOMP_RET_KILL_PROCESS;
    }
  }
  return SECCOMP_RET_KILL_PROCESS;
}

std::string SyscallName(long nr) {
  switch (nr) {
    case SYS_openat: return "openat";
    case SYS_mmap: return "mmap";
    case SYS_munmap: return "munmap";
    case SYS_close: return "close";
    case SYS_memfd_create: return "memfd_create";
    case SYS_ftruncate: return "ftruncate";
    default: return "number " + std::to_string(nr);
  }
}

}  // namespace

SeccompCheck::SeccompCheck(pid_t tid) : pid_(tid) {
  const int mode = SeccompMode(tid);
  if (mode == SECCOMP_MODE_STRICT) {
    throw EngineError("ESECCOMP", "process " + std::to_string(tid) +
                                      " runs in strict seccomp mode (only read, write, exit allowed): nothing can be loaded into it");
  }
  if (mode != SECCOMP_MODE_FILTER) return;
  for (long index = 0;; ++index) {
    const long n = ptrace(static_cast<__ptrace_request>(kGetFilter), tid, reinterpret_cast<void*>(index), nullptr);
    if (n < 0 && errno == ENOENT) break;
    if (n < 0) {
      throw EngineError("ESECCOMP", "process " + std::to_string(tid) + " runs under a seccomp filter that hotpatch " +
                                        "cannot read (" + std::strerror(errno) + "; reading it needs CAP_SYS_ADMIN), so it " +
                                        "cannot tell whether injected calls are allowed; refusing rather than risking the process");
    }
    std::vector<sock_filter> prog(static_cast<size_t>(n));
    if (ptrace(static_cast<__ptrace_request>(kGetFilter), tid, reinterpret_cast<void*>(index), prog.data()) != n) {
      throw EngineError("ESECCOMP", "reading the seccomp filter of process " + std::to_string(tid) + " failed");
    }
    filters_.push_back(std::move(prog));
  }
}

void SeccompCheck::RequireAllowed(long nr, const std::array<uint64_t, 6>& args, uint64_t ip) const {
  if (filters_.empty()) return;
  Data d{static_cast<int32_t>(nr), AUDIT_ARCH_X86_64, ip, {}};
  std::memcpy(d.args, args.data(), sizeof d.args);
  for (const auto& prog : filters_) {
    const uint32_t action = Run(prog, d) & SECCOMP_RET_ACTION_FULL;
    if (action == SECCOMP_RET_ALLOW || action == SECCOMP_RET_LOG) continue;
    const char* what = action == SECCOMP_RET_ERRNO ? "refuse" : action == SECCOMP_RET_TRAP ? "trap" :
                       (action == SECCOMP_RET_KILL_PROCESS || action == SECCOMP_RET_KILL_THREAD) ? "KILL the process for" :
                       "intercept";
    throw EngineError("ESECCOMP", "the seccomp filter of process " + std::to_string(pid_) + " would " + what +
                                      " the system call " + SyscallName(nr) +
                                      " that hotpatch must run inside it to load a patch; nothing was done. Allow it in the " +
                                      "service's filter (e.g. systemd SystemCallFilter=) to make the service patchable");
  }
}

}  // namespace hotpatch
