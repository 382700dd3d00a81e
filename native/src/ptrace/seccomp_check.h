// SeccompCheck: would the target's seccomp filters let an injected system call through?
//
// A filter may answer a forbidden call with SECCOMP_RET_KILL, which would kill the target — the
// worst thing hotpatch can do. So before every injected call the target's own filters (read with
// PTRACE_SECCOMP_GET_FILTER) are run here, in a small classic-BPF interpreter, on the exact call
// and arguments; anything but "allow" is refused before the call is made.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace hotpatch {

class SeccompCheck {
 public:
  // Reads the filters of a stopped tracee (none when it has no seccomp filter).
  explicit SeccompCheck(pid_t tid);

  // Throws ESECCOMP unless every filter allows system call `nr` with `args` from address `ip`.
  void RequireAllowed(long nr, const std::array<uint64_t, 6>& args, uint64_t ip) const;

 private:
  pid_t pid_;
  std::vector<std::vector<sock_filter>> filters_;
};

}  // namespace hotpatch
