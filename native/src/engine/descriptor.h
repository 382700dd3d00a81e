// The patch descriptor: the truth about which patches a process carries, kept inside the process
// itself in a small private mapping of a memfd named "hotpatch-state" (so /proc/PID/maps shows
// it). Any hotpatch process, a restarted agent included, reads the exact state from there.
// Private, not shared: a fork of the target gets its own copy, as it gets its own patched code.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../proc_maps.h"

namespace hotpatch {

class StoppedProcess;
class TargetMemory;

enum class PatchState : uint32_t { kLoaded = 1, kActive = 2, kInactive = 3 };
enum class Consistency : uint8_t { kStrict = 0, kEntry = 1 };
// mmap: hotpatch maps and relocates the patch itself; dlopen: the target's ld.so loads it.
enum class Loader : uint32_t { kMmap = 0, kDlopen = 1 };

constexpr size_t kMaxFunctionsPerPatch = 32;
constexpr size_t kMaxPatches = 32;

struct DescFunction {
  uint64_t address;      // entry of the old function in the target
  uint64_t size;         // its size (for the strict check)
  uint64_t replacement;  // entry of the new function in the target
  uint64_t trampoline;   // slot of a near trampoline page the jump goes through (0: straight to replacement)
  uint8_t keep;          // bytes left in place before the jump (4 for endbr64)
  uint8_t length;        // bytes the jump replaces (5, or 14 when no trampoline page fits near)
  uint8_t consistency;   // Consistency
  uint8_t reserved[5];
  uint8_t original[16];  // bytes at address+keep before activation
  uint8_t jump[16];      // bytes activation writes there
  char symbol[128];
};

constexpr size_t kMaxMappingsPerPatch = 8;

struct DescMapping {
  uint64_t addr;
  uint64_t length;
  uint32_t prot;  // PROT_* as mapped
  uint32_t reserved;
};

struct DescPatch {
  char id[64];
  uint32_t state;  // PatchState
  uint32_t function_count;
  uint64_t base;   // first address of the patch's mappings
  uint64_t span;   // bytes of address space they cover
  uint64_t order;  // load order, for stacking
  char so_path[256];
  uint32_t mapping_count;
  uint32_t loader;         // Loader
  uint64_t eh_frame;       // .eh_frame registered with the target's unwinder (0: none)
  uint64_t dl_handle;      // the target's dlopen handle (Loader::kDlopen)
  DescMapping mappings[kMaxMappingsPerPatch];  // exactly what load mapped, so unload unmaps nothing else
  DescFunction functions[kMaxFunctionsPerPatch];
};

struct DescHeader {
  char magic[8];
  uint32_t version;
  uint32_t patch_count;
  uint64_t next_order;
};

constexpr char kDescriptorName[] = "hotpatch-state";
constexpr size_t kDescriptorSize = (sizeof(DescHeader) + kMaxPatches * sizeof(DescPatch) + 4095) & ~size_t{4095};

struct Descriptor {
  uint64_t next_order = 1;
  std::vector<DescPatch> patches;
};

// The descriptor mapping's address, found in the maps, or nullopt when the process has none.
std::optional<uint64_t> FindDescriptor(const std::vector<Mapping>& maps);

// Reads the descriptor (empty when the process has none). Throws EBAD_DESCRIPTOR when the mapping
// is not ours or is corrupt.
Descriptor ReadDescriptor(const TargetMemory& mem, const std::vector<Mapping>& maps);

// Throws EBAD_DESCRIPTOR unless the target really has the patch's file (its memfd, or the path it
// records) mapped inside the span the record claims: a record is believed before any unmap or call.
void RequireMapped(const DescPatch& p, const std::vector<Mapping>& maps);

// Writes the descriptor back, first creating its mapping (injected memfd_create, ftruncate, mmap,
// close) when the process has none yet, and removing the mapping when no patch is left; `maps`
// is updated then (without reading /proc/PID/maps again).
void WriteDescriptor(StoppedProcess& stopped, uint64_t stub, std::vector<Mapping>& maps, const Descriptor& desc);

}  // namespace hotpatch
