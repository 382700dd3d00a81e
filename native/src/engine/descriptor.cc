#include "descriptor.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstring>

#include "../engine_error.h"
#include "../ptrace/stopped_process.h"
#include "../ptrace/target_memory.h"

namespace hotpatch {
namespace {

constexpr char kMagic[8] = {'H', 'P', 'S', 'T', 'A', 'T', 'E', '1'};
constexpr uint32_t kVersion = 3;  // 3: functions record their trampoline slot

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
  return desc;
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
