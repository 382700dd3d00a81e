// LoadPlan: exactly what loading a patch shared object at a given base means in the target —
// the mmaps to make and the bytes to write (relocations, zeroed .bss tail). Pure computation:
// nothing here touches the target; the engine carries the plan out inside a stop.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../proc_maps.h"
#include "patch_file.h"
#include "target_image.h"

namespace hotpatch {

struct SegmentMapping {
  uint64_t addr;
  uint64_t length;
  int prot;  // PROT_*
  uint64_t file_offset;
  bool anonymous;  // .bss pages beyond the file
};

struct MemoryWrite {
  uint64_t addr;
  std::vector<uint8_t> bytes;
};

struct LoadPlan {
  std::string so_path;
  uint64_t base;
  uint64_t span;
  std::vector<SegmentMapping> mappings;      // mmap these in order, MAP_PRIVATE|MAP_FIXED_NOREPLACE
  std::vector<MemoryWrite> writes;           // then write these
  std::map<std::string, uint64_t> exports;   // the patch's defined functions and objects -> target address
};

// Bytes of address space the patch needs (page aligned).
uint64_t PatchSpan(const PatchFile& patch);

// Lays the patch out at `base` and resolves its relocations against itself, then the target.
// Throws EUNSUPPORTED_PATCH, EUNSUPPORTED_RELOC, ENOSYMBOL. Constructors
// (.init_array) of the patch are never run.
LoadPlan PlanLoad(const TargetImage& target, const PatchFile& patch, const std::string& so_path, uint64_t base);

// A free, page-aligned base such that [base, base+span) is within rel32 reach (±2 GiB) of
// `near`, preferring space below it (the heap grows upwards); nullopt when there is none.
std::optional<uint64_t> ChooseBase(const std::vector<Mapping>& maps, uint64_t near, uint64_t span);

// Any free page-aligned base for `span` bytes (the jumps to it will be 14-byte absolute ones).
std::optional<uint64_t> ChooseAnyBase(const std::vector<Mapping>& maps, uint64_t span);

}  // namespace hotpatch
