// TargetMemory: reads and writes another process's memory through /proc/PID/mem. Writes reach
// read-only and executable private mappings too (the kernel copies the page on write), which is
// how code is patched without mprotect.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "../fd.h"

namespace hotpatch {

class TargetMemory {
 public:
  explicit TargetMemory(pid_t pid);

  std::vector<uint8_t> Read(uint64_t addr, size_t len) const;
  // Reads as much as is readable from addr on (stops at the first unmapped byte).
  size_t ReadSome(uint64_t addr, uint8_t* out, size_t len) const;
  void Write(uint64_t addr, const std::vector<uint8_t>& bytes) const;
  void Write(uint64_t addr, const void* bytes, size_t len) const;

 private:
  pid_t pid_;
  UniqueFd fd_;
};

}  // namespace hotpatch
