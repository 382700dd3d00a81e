#include "safety.h"

#include <algorithm>
#include <cstdio>

namespace hotpatch {
namespace {

constexpr size_t kMaxStackScan = 8u << 20;  // the default thread stack size; deeper is not a real stack

const GuardedRange* Hit(const std::vector<GuardedRange>& ranges, uint64_t p) {
  for (const auto& r : ranges) {
    if (p >= r.lo && p < r.hi) return &r;
  }
  return nullptr;
}

const Mapping* MappingOf(const std::vector<Mapping>& maps, uint64_t addr) {
  for (const auto& m : maps) {
    if (addr >= m.start && addr < m.end) return &m;
  }
  return nullptr;
}

}  // namespace

std::optional<Conflict> FindConflict(const StoppedProcess& stopped, std::vector<Mapping>& maps,
                                     const std::vector<GuardedRange>& ranges) {
  if (ranges.empty()) return std::nullopt;
  std::vector<uint64_t> words;
  for (const ThreadState& t : stopped.threads()) {
    if (const GuardedRange* r = Hit(ranges, t.regs.rip)) return Conflict{t.tid, t.regs.rip, true, r->name};

    const uint64_t rsp = t.regs.rsp;
    const Mapping* stack = MappingOf(maps, rsp);
    if (stack == nullptr) {
      maps = ReadProcMaps(stopped.pid());  // a thread started after `maps` was read
      stack = MappingOf(maps, rsp);
    }
    if (stack == nullptr) continue;  // rsp outside any mapping: nothing to scan
    const size_t len = static_cast<size_t>(std::min<uint64_t>(stack->end - rsp, kMaxStackScan)) & ~size_t{7};
    words.resize(len / 8);
    const size_t got = stopped.memory().ReadSome(rsp, reinterpret_cast<uint8_t*>(words.data()), len);
    for (size_t i = 0; i < got / 8; ++i) {
      if (const GuardedRange* r = Hit(ranges, words[i])) return Conflict{t.tid, words[i], false, r->name};
    }
  }
  return std::nullopt;
}

std::string DescribeConflict(pid_t pid, const Conflict& c) {
  char pos[32];
  std::snprintf(pos, sizeof pos, "0x%llx", static_cast<unsigned long long>(c.position));
  return "thread " + std::to_string(c.tid) + " of process " + std::to_string(pid) +
         (c.is_pc ? " is executing in " : " will return into ") + c.name + " (" + (c.is_pc ? "pc " : "return address ") +
         pos + ")";
}

}  // namespace hotpatch
