#include "descriptor.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>

#include "patch_delivery.h"
#include "redirect.h"
#include "trampoline.h"

#include "../engine_error.h"
#include "../ptrace/stopped_process.h"
#include "../ptrace/target_memory.h"

namespace hotpatch {
namespace {

constexpr char kMagic[8] = {'H', 'P', 'S', 'T', 'A', 'T', 'E', '1'};
constexpr uint32_t kVersion = 3;  // 3: functions record their trampoline slot
constexpr uint64_t kUserTop = 0x800000000000;  // end of the x86-64 user address space

bool IsDescriptorPath(const std::string& path) {
  return path.rfind(std::string("/memfd:") + kDescriptorName, 0) == 0;
}

[[noreturn]] void ThrowInjected(long rc, const char* call) {
  throw EngineError("EINJECT", std::string("the injected ") + call + " failed in the target: " + std::strerror(static_cast<int>(-rc)));
}

uint64_t CreateMapping(StoppedProcess& stopped, uint64_t stub) {
  const uint64_t name = stopped.Scratch(sizeof kDescriptorName);
  stopped.memory().Write(name, kDescriptorName, sizeof kDescriptorName);
  const long fd = stopped.InjectSyscall(stub, SYS_memfd_create, static_cast<long>(name), MFD_CLOEXEC);
  if (fd < 0) ThrowInjected(fd, "memfd_create");
  long rc = stopped.InjectSyscall(stub, SYS_ftruncate, fd, static_cast<long>(kDescriptorSize));
  long addr = rc < 0 ? rc
                     : stopped.InjectSyscall(stub, SYS_mmap, 0, static_cast<long>(kDescriptorSize), PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE, fd, 0);
  stopped.InjectSyscall(stub, SYS_close, fd);
  if (rc < 0) ThrowInjected(rc, "ftruncate");
  if (addr < 0 && addr > -4096) ThrowInjected(addr, "mmap");
  return static_cast<uint64_t>(addr);
}

// Whether [addr, addr+len) is a non-empty range that does not wrap and lies inside [lo, hi).
bool Within(uint64_t addr, uint64_t len, uint64_t lo, uint64_t hi) {
  return len != 0 && addr >= lo && addr <= hi && len <= hi - addr;
}

std::string Str(const char* field, size_t cap) { return std::string(field, ::strnlen(field, cap)); }

bool Terminated(const char* field, size_t cap) { return ::strnlen(field, cap) < cap; }

// Why a record read from the target cannot be one we wrote, or empty when it can. The descriptor
// lives in the target's memory, and any process of the target's user can forge one: every count
// bounds an array, every enum is checked, every address must lie inside the patch's own span.
std::string Invalid(const DescPatch& p) {
  if (!Terminated(p.id, sizeof p.id) || p.id[0] == '\0') return "an id that is empty or not terminated";
  if (!Terminated(p.so_path, sizeof p.so_path)) return "a path that is not terminated";
  if (p.state < static_cast<uint32_t>(PatchState::kLoaded) || p.state > static_cast<uint32_t>(PatchState::kInactive)) {
    return "state " + std::to_string(p.state);
  }
  if (p.loader > static_cast<uint32_t>(Loader::kDlopen)) return "loader " + std::to_string(p.loader);
  if (p.function_count == 0 || p.function_count > kMaxFunctionsPerPatch) return "function_count " + std::to_string(p.function_count);
  if (p.mapping_count > kMaxMappingsPerPatch) return "mapping_count " + std::to_string(p.mapping_count);
  if (!Within(p.base, p.span, 4096, kUserTop)) return "a patch span outside user memory";
  const uint64_t end = p.base + p.span;
  if (p.eh_frame != 0 && !Within(p.eh_frame, 1, p.base, end)) return "an .eh_frame outside the patch";
  for (uint32_t i = 0; i < p.mapping_count; ++i) {
    const DescMapping& m = p.mappings[i];
    if (!Within(m.addr, m.length, p.base, end) || m.addr % 4096 != 0) return "mapping " + std::to_string(i) + " outside the patch";
  }
  for (uint32_t i = 0; i < p.function_count; ++i) {
    const DescFunction& f = p.functions[i];
    const std::string which = "function " + std::to_string(i);
    if (!Terminated(f.symbol, sizeof f.symbol)) return which + ": a symbol name that is not terminated";
    if (f.consistency > static_cast<uint8_t>(Consistency::kEntry)) return which + ": consistency " + std::to_string(f.consistency);
    if (f.keep > 4 || (f.length != kRel32JumpLength && f.length != kAbsJumpLength)) return which + ": jump bounds";
    if (!Within(f.address, f.size, 4096, kUserTop) || f.size < uint64_t{f.keep} + f.length) return which + ": its extent";
    if (!Within(f.replacement, 1, p.base, end)) return which + ": a replacement outside the patch";
    // A jump through a near trampoline goes to its slot; the slot's own jump is checked where it is used.
    if (f.trampoline != 0 && !Within(f.trampoline, kTrampolineSlot, 4096, kUserTop)) return which + ": a trampoline slot outside user memory";
    const uint64_t target = f.trampoline != 0 ? f.trampoline : f.replacement;
    if (DecodeJump(f.address + f.keep, f.jump, f.length) != target) return which + ": a jump elsewhere than its replacement";
  }
  return "";
}

}  // namespace

std::optional<uint64_t> FindDescriptor(const std::vector<Mapping>& maps) {
  for (const auto& m : maps) {
    if (IsDescriptorPath(m.path)) return m.start;
  }
  return std::nullopt;
}

Descriptor ReadDescriptor(const TargetMemory& mem, const std::vector<Mapping>& maps) {
  Descriptor desc;
  const auto addr = FindDescriptor(maps);
  if (!addr) return desc;
  const auto mapping = std::find_if(maps.begin(), maps.end(), [&](const Mapping& m) { return m.start == *addr; });
  if (mapping->end - mapping->start < kDescriptorSize) {
    throw EngineError("EBAD_DESCRIPTOR", "the hotpatch-state mapping of this process is " +
                                             std::to_string(mapping->end - mapping->start) +
                                             " bytes, not the descriptor hotpatch writes (forged?); not touching the process");
  }
  DescHeader header;
  const auto raw = mem.Read(*addr, sizeof header);
  std::memcpy(&header, raw.data(), sizeof header);
  if (std::memcmp(header.magic, kMagic, sizeof kMagic) != 0 || header.version != kVersion ||
      header.patch_count > kMaxPatches) {
    throw EngineError("EBAD_DESCRIPTOR", "the hotpatch-state mapping of this process is not in a format this hotpatch reads");
  }
  desc.next_order = header.next_order;
  desc.patches.resize(header.patch_count);
  if (header.patch_count > 0) {
    const auto body = mem.Read(*addr + sizeof header, header.patch_count * sizeof(DescPatch));
    std::memcpy(desc.patches.data(), body.data(), body.size());
  }
  for (size_t i = 0; i < desc.patches.size(); ++i) {
    if (const std::string why = Invalid(desc.patches[i]); !why.empty()) {
      throw EngineError("EBAD_DESCRIPTOR", "record " + std::to_string(i) + " of the hotpatch-state mapping of this process has " +
                                               why + " (forged or corrupt); not touching the process");
    }
  }
  return desc;
}

void RequireMapped(const DescPatch& p, const std::vector<Mapping>& maps) {
  const std::string id = Str(p.id, sizeof p.id);
  const std::string memfd = PatchMemfdPath(id);
  const std::string path = Str(p.so_path, sizeof p.so_path);
  for (const Mapping& m : maps) {
    const std::string shown = m.path.substr(0, m.path.rfind(" (deleted)"));
    if (m.start >= p.base && m.end <= p.base + p.span && (shown == memfd || shown == path)) return;
  }
  throw EngineError("EBAD_DESCRIPTOR", "the descriptor of this process names a patch '" + id +
                                           "' whose file is not mapped where it says (forged?); not touching the process");
}

void WriteDescriptor(StoppedProcess& stopped, uint64_t stub, std::vector<Mapping>& maps, const Descriptor& desc) {
  if (desc.patches.size() > kMaxPatches) {
    throw EngineError("ETOO_MANY_PATCHES", "a process can carry at most " + std::to_string(kMaxPatches) + " patches");
  }
  auto addr = FindDescriptor(maps);
  if (desc.patches.empty()) {
    // A process that carries no patch keeps no trace of hotpatch either.
    if (addr) {
      const long rc = stopped.InjectSyscall(stub, SYS_munmap, static_cast<long>(*addr), static_cast<long>(kDescriptorSize));
      if (rc < 0) ThrowInjected(rc, "munmap");
      std::erase_if(maps, [&](const Mapping& m) { return m.start == *addr; });
    }
    return;
  }
  if (!addr) {
    addr = CreateMapping(stopped, stub);
    // What the kernel now lists, without reading the maps again inside the stop.
    maps.push_back({*addr, *addr + kDescriptorSize, "rw-p", 0, "00:00", 0, std::string("/memfd:") + kDescriptorName + " (deleted)"});
  }
  DescHeader header{};
  std::memcpy(header.magic, kMagic, sizeof kMagic);
  header.version = kVersion;
  header.patch_count = static_cast<uint32_t>(desc.patches.size());
  header.next_order = desc.next_order;
  // Records first, header last: a reader never sees a count that covers unwritten records.
  if (!desc.patches.empty()) {
    stopped.memory().Write(*addr + sizeof header, desc.patches.data(), desc.patches.size() * sizeof(DescPatch));
  }
  stopped.memory().Write(*addr, &header, sizeof header);
}

}  // namespace hotpatch
