// The target's own dynamic loader, for patches loaded with dlopen (C++ patches that must be known
// to ld.so). Code of the target runs here, so the calls are made only while no stopped thread is
// inside the code whose locks they take: the loader itself and the allocator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../loader/target_image.h"
#include "../ptrace/stopped_process.h"
#include "safety.h"

namespace hotpatch {

struct DlopenApi {
  uint64_t dlopen;
  uint64_t dlclose;
  uint64_t dlerror;
  std::vector<GuardedRange> busy;  // code that may hold the loader's or malloc's locks
};

// Throws EUNSUPPORTED_LOADER when the target has no dlopen (a static program).
DlopenApi FindDlopen(const TargetImage& image);

// dlopen(path, RTLD_NOW | RTLD_LOCAL) inside the target; returns the handle (a struct link_map*).
// Throws EDLOPEN with dlerror()'s message when the target's loader refuses the patch.
uint64_t CallDlopen(StoppedProcess& stopped, uint64_t stub, const DlopenApi& api, const std::string& path);

// dlclose(handle) inside the target. Throws EDLOPEN when it fails.
void CallDlclose(StoppedProcess& stopped, uint64_t stub, const DlopenApi& api, uint64_t handle);

}  // namespace hotpatch
