// The target's ELF entry point (AT_ENTRY from /proc/PID/auxv). `_start` runs once at start-up and
// never again, so while every thread is stopped its first bytes can be borrowed for injected calls.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace hotpatch {

uint64_t ReadEntryPoint(pid_t pid);

}  // namespace hotpatch
