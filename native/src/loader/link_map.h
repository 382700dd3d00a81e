// LinkMap: the dynamic linker's own list of the objects it loaded (the struct link_map chain that
// r_debug heads), read from the target's memory. Its order is ld.so's symbol search order for the
// objects loaded at start-up: the executable, LD_PRELOAD'd objects, the needed libraries breadth
// first; objects dlopen'ed later follow in the order they were loaded.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "../ptrace/target_memory.h"

namespace hotpatch {

struct LinkMapEntry {
  uint64_t l_addr;  // the object's load bias
  uint64_t l_ld;    // where its dynamic section is in the target
  uint64_t address;  // of the struct link_map itself, whose later fields hold its TLS block (tls.h)
};

struct LinkMapChain {
  std::vector<LinkMapEntry> entries;  // ld.so's list, when it could be read
  std::string unavailable;            // otherwise why not, for the operator
};

// `dynamic` and `dynamic_size`: the executable's PT_DYNAMIC in the target (0 for a static program).
// `r_debug_symbol`: finds ld.so's `_r_debug` in the target (0 if none); asked only when DT_DEBUG is empty.
// The target may be running: a dlopen or dlclose in progress changes only the chain's tail, never
// the objects loaded at start-up.
LinkMapChain ReadLinkMap(const TargetMemory& mem, uint64_t dynamic, uint64_t dynamic_size,
                         const std::function<uint64_t()>& r_debug_symbol);

}  // namespace hotpatch
