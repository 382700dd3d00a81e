// Registering a patch's C++ unwind tables (.eh_frame) with the target's own unwinder (libgcc's),
// so that exceptions thrown through patch code loaded by the mmap loader are caught.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "../loader/target_image.h"
#include "safety.h"

namespace hotpatch {

// The target's C++ unwinder (libgcc's), if it has one: where to register a patch's .eh_frame so
// that exceptions can be thrown through patch code, and the code that must be free to call it
// (its lock is only ever held inside that code).
struct Unwinder {
  uint64_t register_fn;
  uint64_t deregister_fn;
  std::vector<GuardedRange> busy;
};

// The target's unwinder, or nullopt for a program without one (C: nothing unwinds through a patch).
std::optional<Unwinder> FindUnwinder(const TargetImage& image);

}  // namespace hotpatch
