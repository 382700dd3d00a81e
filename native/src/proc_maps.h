// ProcMaps: the mappings of a live process, from /proc/PID/maps.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace hotpatch {

struct Mapping {
  uint64_t start;
  uint64_t end;
  std::string perms;  // e.g. "r-xp"
  uint64_t offset;
  std::string dev;    // "major:minor"
  uint64_t inode;
  std::string path;   // file path, "[heap]", "[stack]", ... or empty for anonymous memory
};

// Reads /proc/PID/maps. Throws EngineError(ENOPROCESS) when the process does not exist.
std::vector<Mapping> ReadProcMaps(pid_t pid);

}  // namespace hotpatch
