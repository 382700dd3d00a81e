#include "link_map.h"

#include <elf.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>

namespace hotpatch {
namespace {

constexpr size_t kMaxObjects = 65536;  // ends a chain that loops or runs into garbage
constexpr uint64_t kMaxDynamic = 65536;  // a PT_DYNAMIC size from the target's file is its word, not ours

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

bool ReadWords(const TargetMemory& mem, uint64_t addr, uint64_t* out, size_t n) {
  return mem.ReadSome(addr, reinterpret_cast<uint8_t*>(out), n * sizeof(uint64_t)) == n * sizeof(uint64_t);
}

}  // namespace

LinkMapChain ReadLinkMap(const TargetMemory& mem, uint64_t dynamic, uint64_t dynamic_size,
                         const std::function<uint64_t()>& r_debug_symbol) {
  if (dynamic == 0) return {{}, "the executable has no dynamic section (a static program has no dynamic linker)"};
  uint64_t r_debug = 0;
  std::vector<uint64_t> dyn(std::min(dynamic_size, kMaxDynamic) / sizeof(uint64_t));
  const size_t got = mem.ReadSome(dynamic, reinterpret_cast<uint8_t*>(dyn.data()), dyn.size() * sizeof(uint64_t));
  for (size_t i = 0; i + 1 < got / sizeof(uint64_t) && dyn[i] != DT_NULL; i += 2) {
    if (dyn[i] == DT_DEBUG) r_debug = dyn[i + 1];
  }
  if (r_debug == 0) r_debug = r_debug_symbol();
  if (r_debug == 0) {
    return {{}, "the executable's DT_DEBUG is empty and no _r_debug was found (the dynamic linker has not started yet?)"};
  }
  // struct r_debug { int r_version; struct link_map* r_map; ... }
  uint64_t head[2];
  if (!ReadWords(mem, r_debug, head, 2)) return {{}, "cannot read r_debug at " + Hex(r_debug)};
  if (static_cast<uint32_t>(head[0]) == 0 || head[1] == 0) {
    return {{}, "r_debug at " + Hex(r_debug) + " lists no objects yet (the dynamic linker has not finished starting)"};
  }
  LinkMapChain chain;
  std::set<uint64_t> seen;
  // struct link_map { ElfW(Addr) l_addr; char* l_name; ElfW(Dyn)* l_ld; struct link_map* l_next; ... }
  uint64_t at = head[1];
  while (at != 0) {
    uint64_t lm[4];
    if (chain.entries.size() >= kMaxObjects || !seen.insert(at).second) {
      return {{}, "the link_map chain at " + Hex(head[1]) + " does not end (corrupt memory?)"};
    }
    if (!ReadWords(mem, at, lm, 4)) return {{}, "cannot read the link_map entry at " + Hex(at)};
    chain.entries.push_back({lm[0], lm[2], at});
    at = lm[3];
  }
  return chain;
}

}  // namespace hotpatch
