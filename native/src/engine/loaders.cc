// What both loaders share: the jump each old function gets, and its record in the descriptor.
#include "loaders.h"

#include <cstring>

#include "../engine_error.h"
#include "op_support.h"
#include "redirect.h"

namespace hotpatch {

std::vector<PlannedFunction> PlanFunctions(const PatchSpec& spec, const std::vector<ResolvedSymbol>& old_fns,
                                           const std::map<std::string, uint64_t>& exports, const TargetMemory& mem) {
  std::vector<PlannedFunction> planned;
  for (size_t i = 0; i < spec.functions.size(); ++i) {
    const auto& f = spec.functions[i];
    const auto it = exports.find(f.replacement);
    if (it == exports.end()) {
      throw EngineError("ENOSYMBOL", "the patch " + spec.so_path + " defines no function '" + f.replacement +
                                         "' (replacement for " + f.symbol + ")");
    }
    const auto entry = mem.Read(old_fns[i].address, 4);
    const size_t keep = EntryKeep(entry.data(), entry.size());
    if (old_fns[i].size < keep + kRel32JumpLength) {
      throw EngineError("EFUNC_TOO_SHORT", "function " + f.symbol + " is " + std::to_string(old_fns[i].size) +
                                               " bytes long; the jump needs " + std::to_string(keep + kRel32JumpLength) +
                                               (old_fns[i].size == 0 ? " (its symbol has no size)" : ""));
    }
    planned.push_back({old_fns[i], it->second, keep, {}, 0});
  }
  return planned;
}

void ChooseJumps(std::vector<PlannedFunction>& planned, TrampolineSlots& slots) {
  for (PlannedFunction& p : planned) {
    const uint64_t site = p.old_fn.address + p.keep;
    if (InRel32Reach(site, p.replacement)) {
      p.jump = EncodeJump(site, p.replacement);
    } else if (const std::optional<uint64_t> slot = slots.Place(site, p.replacement)) {
      p.trampoline = *slot;
      p.jump = EncodeJump(site, *slot);
    } else if (p.old_fn.size >= p.keep + kAbsJumpLength) {
      p.jump = EncodeJump(site, p.replacement);
    } else {
      throw EngineError("EFUNC_TOO_SHORT", "the replacement of the " + std::to_string(p.old_fn.size) + "-byte function at " +
                                               Hex(p.old_fn.address) + " is beyond ±2 GiB and no free page lies within " +
                                               "±2 GiB of it for a trampoline; the 14-byte absolute jump does not fit");
    }
  }
}

void FillFunctions(DescPatch& record, const PatchSpec& spec, const std::vector<PlannedFunction>& planned,
                   const TargetMemory& mem) {
  record.function_count = static_cast<uint32_t>(planned.size());
  for (size_t i = 0; i < planned.size(); ++i) {
    const auto& p = planned[i];
    DescFunction& f = record.functions[i];
    f.address = p.old_fn.address;
    f.size = p.old_fn.size;
    f.replacement = p.replacement;
    f.trampoline = p.trampoline;
    f.keep = static_cast<uint8_t>(p.keep);
    f.length = static_cast<uint8_t>(p.jump.size());
    f.consistency = static_cast<uint8_t>(spec.functions[i].consistency);
    const auto original = mem.Read(f.address + f.keep, f.length);
    std::memcpy(f.original, original.data(), f.length);
    std::memcpy(f.jump, p.jump.data(), f.length);
    CopyField(f.symbol, sizeof f.symbol, spec.functions[i].symbol, "symbol name");
  }
}

}  // namespace hotpatch
