// The two ways of loading a patch (mmap, dlopen) and what they share: which jump each old
// function gets and how the patch is recorded in the descriptor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../loader/patch_file.h"
#include "../loader/target_image.h"
#include "../ptrace/target_memory.h"
#include "descriptor.h"
#include "patch_ops.h"
#include "session.h"
#include "trampoline.h"

namespace hotpatch {

struct PlannedFunction {
  ResolvedSymbol old_fn;
  uint64_t replacement;
  size_t keep;
  std::vector<uint8_t> jump;  // chosen by ChooseJumps, inside the load's stop
  uint64_t trampoline = 0;
};

// What LoadPatch has found out before it picks a loader.
struct LoadContext {
  const TargetImage& image;
  const PatchFile& patch;
  const std::vector<ResolvedSymbol>& old_fns;
  ProcessSession& session;
  DescPatch record;  // id and path filled in
  const std::vector<uint8_t>& bytes;  // the patch file, handed to the target as a sealed memfd
  uint64_t span;
};

// Where each old function will jump, and whether a 5-byte jump fits: the replacement's address
// comes from the loaded patch, the bytes kept in front (endbr64) from the old function's entry.
std::vector<PlannedFunction> PlanFunctions(const PatchSpec& spec, const std::vector<ResolvedSymbol>& old_fns,
                                           const std::map<std::string, uint64_t>& exports, const TargetMemory& mem);

// An E9 rel32 straight to the replacement when it is in reach, else to a near trampoline slot;
// the 14-byte absolute jump only where no page can be placed near and the function has room.
void ChooseJumps(std::vector<PlannedFunction>& planned, TrampolineSlots& slots);

// Records each function in the patch's descriptor entry, with the bytes its jump will replace.
void FillFunctions(DescPatch& record, const PatchSpec& spec, const std::vector<PlannedFunction>& planned,
                   const TargetMemory& mem);

// The mmap loader: hotpatch maps the patch itself (file-backed, within ±2 GiB of the first old
// function when there is room), applies its relocations and registers its unwind tables.
OpResult LoadWithMmap(const PatchSpec& spec, const OpOptions& opts, LoadContext ctx);

// The dlopen loader: the target's own ld.so loads the patch, so its unwinder, constructors and
// exception tables work as for any library.
OpResult LoadWithDlopen(const PatchSpec& spec, const OpOptions& opts, LoadContext ctx);

}  // namespace hotpatch
