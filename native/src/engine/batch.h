// Applying one patch to many processes at once: worker threads of our own, each doing whole
// transactions (ptrace requests must come from the thread that attached), sharing one
// ObjectCache so that the program, its libraries and the patch are parsed once.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "patch_ops.h"

namespace hotpatch {

struct BatchResult {
  pid_t pid;
  enum class Outcome { kDone, kAlready, kFailed } outcome;
  OpResult result;      // kDone, kAlready
  std::string code;     // kFailed
  std::string message;  // kFailed
};

// Loads (unless present) and activates `spec` in every process, `parallel` at a time. A process
// where activation fails gets the patch unloaded again. Results come in the order of `pids`.
std::vector<BatchResult> ApplyBatch(const std::vector<pid_t>& pids, const PatchSpec& spec, const OpOptions& opts,
                                    unsigned parallel);

// Applies to one process: the per-process step of ApplyBatch, also behind the single applyPatch.
BatchResult ApplyOne(pid_t pid, const PatchSpec& spec, const OpOptions& opts);

}  // namespace hotpatch
