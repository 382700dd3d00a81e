// The patch operations. Each is one transaction on one thread: stop every thread of the target,
// do the whole batch, resume, and report what was done and how long the target was paused.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "../loader/object_cache.h"
#include "descriptor.h"
#include "session.h"

namespace hotpatch {

struct FunctionSpec {
  std::string symbol;       // old function in the target (may be qualified "file.c:name")
  std::string replacement;  // new function in the patch
  Consistency consistency;
};

struct PatchSpec {
  std::string id;
  std::string so_path;
  std::vector<FunctionSpec> functions;
  Loader loader = Loader::kMmap;
};

struct OpOptions {
  std::chrono::milliseconds safety_timeout{5000};
  std::vector<std::string> debug_dirs;
  const std::atomic<int32_t>* cancelled = nullptr;  // set to non-zero to stop retrying
  bool far = false;  // place the patch anywhere (14-byte absolute jumps) instead of within ±2 GiB
  ObjectCache* cache = nullptr;  // parsed ELF files shared across processes; a private one if null
};

struct OpResult {
  DescPatch record;
  uint64_t pause_us = 0;  // the longest single stop of the operation
  uint32_t attempts = 0;  // stops it took (strict checks retry)
};

// loaded: maps the patch, applies its relocations and records it. Nothing jumps to it yet.
OpResult LoadPatch(pid_t pid, const PatchSpec& spec, const OpOptions& opts);
OpResult LoadPatch(ProcessSession& session, const PatchSpec& spec, const OpOptions& opts);
// loaded|inactive -> active: writes the jumps once the safety check passes.
OpResult ActivatePatch(pid_t pid, const std::string& id, const OpOptions& opts);
OpResult ActivatePatch(ProcessSession& session, const std::string& id, const OpOptions& opts);
// active -> inactive: restores the original bytes, after checking the jumps are still ours.
OpResult DeactivatePatch(pid_t pid, const std::string& id, const OpOptions& opts);
// loaded|inactive -> gone: unmaps the patch once no thread is in or returning into its code.
OpResult UnloadPatch(pid_t pid, const std::string& id, const OpOptions& opts);
// Reads the descriptor without stopping the target.
Descriptor ListPatches(pid_t pid);
// Stops every thread and resumes at once: the floor every operation's pause is measured against.
uint64_t StopResume(pid_t pid);

}  // namespace hotpatch
