// PatchFile: what the loader needs of a patch shared object (segments, dynamic relocations,
// exported symbols), read once with libelf and then shared by every process it is loaded into.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hotpatch {

struct PatchSegment {
  uint64_t vaddr, memsz, offset, filesz;
  uint32_t flags;
};

struct PatchRelocation {
  uint64_t offset;
  uint32_t type;
  int64_t addend;
  std::string symbol;  // empty for none
  bool defined;        // defined in the patch itself
  uint64_t value;      // its st_value when defined
  bool weak;
};

struct PatchFile {
  std::vector<PatchSegment> loads;          // PT_LOAD segments in file order
  std::vector<PatchRelocation> relocations;
  std::map<std::string, uint64_t> exports;  // st_value of defined functions and objects
  uint64_t eh_frame = 0;                     // vaddr of .eh_frame (C++ unwinding tables), 0 if none
};

// Reads and checks a patch: a 64-bit x86-64 ET_DYN that defines no TLS (it may use the
// target's) and no IFUNCs. Throws EELF_OPEN,
// EBAD_ELF, EUNSUPPORTED_PATCH, EUNSUPPORTED_RELOC.
PatchFile ReadPatch(const std::string& path);

}  // namespace hotpatch
