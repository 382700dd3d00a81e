// The patch operations' entry points: load (common checks, then one of the loaders), activate,
// deactivate, unload, list. Each stop is one transaction (see patch_ops.h).
#include "patch_ops.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "../engine_error.h"
#include "../loader/load_plan.h"
#include "../loader/target_image.h"
#include "../ptrace/errno_codes.h"
#include "../ptrace/proc_auxv.h"
#include "../ptrace/stopped_process.h"
#include "dlopen_api.h"
#include "frame_registry.h"
#include "loaders.h"
#include "op_support.h"
#include "patch_delivery.h"
#include "redirect.h"
#include "return_wait.h"
#include "safety.h"
#include "trampoline.h"

namespace hotpatch {
namespace {

// Once no thread is in the way, writes every function's jump (to kActive) or original bytes (to
// kInactive), and records the new state in the target's descriptor.
std::optional<Conflict> SwitchJumps(StoppedProcess& stopped, std::vector<Mapping>& maps,
                                    const std::vector<GuardedRange>& ranges, uint64_t stub, Descriptor& desc,
                                    DescPatch& rec, PatchState to, OpResult& result) {
  if (auto conflict = FindConflict(stopped, maps, ranges)) return conflict;
  for (uint32_t i = 0; i < rec.function_count; ++i) {
    const DescFunction& f = rec.functions[i];
    stopped.memory().Write(f.address + f.keep, to == PatchState::kActive ? f.jump : f.original, f.length);
  }
  rec.state = static_cast<uint32_t>(to);
  WriteDescriptor(stopped, stub, maps, desc);
  result.record = rec;
  return std::nullopt;
}

}  // namespace

OpResult LoadPatch(ProcessSession& session, const PatchSpec& spec, const OpOptions& opts) {
  const pid_t pid = session.pid;
  if (spec.functions.empty() || spec.functions.size() > kMaxFunctionsPerPatch) {
    throw EngineError("EBAD_ARGUMENT", "a patch replaces 1 to " + std::to_string(kMaxFunctionsPerPatch) + " functions");
  }
  DescPatch record{};
  CopyField(record.id, sizeof record.id, spec.id, "patch id");

  ObjectCache own_cache;
  ObjectCache& cache = opts.cache != nullptr ? *opts.cache : own_cache;
  const TargetImage image(pid, opts.debug_dirs, cache, session.maps);
  const std::shared_ptr<const PatchFile> patch = cache.Patch(spec.so_path);
  std::vector<ResolvedSymbol> old_fns;
  for (const auto& f : spec.functions) old_fns.push_back(image.Resolve(f.symbol));

  if (FindPatch(session.desc, spec.id) != nullptr) {
    throw EngineError("EPATCH_EXISTS", "process " + std::to_string(pid) + " already has a patch '" + spec.id + "'");
  }
  const std::vector<uint8_t> bytes = ReadPatchBytes(spec.so_path);
  CopyField(record.so_path, sizeof record.so_path, PatchMemfdPath(spec.id), "patch path");  // as the target maps it
  const uint64_t span = PatchSpan(*patch);
  const LoadContext ctx{image, *patch, old_fns, session, record, bytes, span};
  return spec.loader == Loader::kDlopen ? LoadWithDlopen(spec, opts, ctx) : LoadWithMmap(spec, opts, ctx);
}

OpResult ActivatePatch(ProcessSession& session, const std::string& id, const OpOptions& opts) {
  const pid_t pid = session.pid;
  std::vector<Mapping>& maps = session.maps;
  const DescPatch known = RequirePatch(session.desc, id, pid);
  if (known.state == static_cast<uint32_t>(PatchState::kActive)) return OpResult{known, 0, 0};

  std::vector<GuardedRange> ranges;
  std::vector<std::pair<uint64_t, std::string>> owners;
  for (uint32_t i = 0; i < known.function_count; ++i) {
    const DescFunction& f = known.functions[i];
    const std::string name = Str(f.symbol, sizeof f.symbol);
    const uint64_t site = f.address + f.keep;
    // strict: nowhere inside the old function; entry: not inside the bytes the jump overwrites.
    // A thread exactly at the entry is fine either way: it will take the new jump.
    if (static_cast<Consistency>(f.consistency) == Consistency::kStrict) {
      ranges.push_back({f.address + 1, f.address + f.size, name});
      owners.emplace_back(f.address, name);  // its .cold and .part.N parts count too
    } else {
      ranges.push_back({site + 1, site + f.length, name + " (its first " + std::to_string(f.keep + f.length) + " bytes)"});
    }
  }
  const uint64_t stub = session.stub;
  ExactCheck check(pid, ranges, owners);  // before any stop: reads the objects and their CFI
  const auto deadline = Clock::now() + opts.safety_timeout;
  OpResult activated = WithRetries(pid, opts, [&](StoppedProcess& stopped, OpResult& result) -> std::optional<Conflict> {
    Descriptor desc = ReadDescriptor(stopped.memory(), maps);
    DescPatch& rec = RequirePatch(desc, id, pid);
    for (uint32_t i = 0; i < rec.function_count; ++i) {
      const DescFunction& f = rec.functions[i];
      const auto now = stopped.memory().Read(f.address + f.keep, f.length);
      if (std::memcmp(now.data(), f.original, f.length) != 0) {
        throw EngineError("ECODE_CHANGED", "the code of " + Str(f.symbol, sizeof f.symbol) + " at " + Hex(f.address) +
                                               " changed since patch '" + id + "' was loaded (another patch applied " +
                                               "on it?); unload and apply this patch again");
      }
    }
    return SwitchWhenFree(stopped, maps, check, stub, deadline, result.attempts > 0, opts.cancelled, [&] {
      SwitchJumps(stopped, maps, {}, stub, desc, rec, PatchState::kActive, result);
    });
  });
  *FindPatch(session.desc, id) = activated.record;  // as this stop wrote it
  return activated;
}

OpResult LoadPatch(pid_t pid, const PatchSpec& spec, const OpOptions& opts) {
  ProcessSession session(pid);
  return LoadPatch(session, spec, opts);
}

OpResult ActivatePatch(pid_t pid, const std::string& id, const OpOptions& opts) {
  ProcessSession session(pid);
  return ActivatePatch(session, id, opts);
}

OpResult DeactivatePatch(pid_t pid, const std::string& id, const OpOptions& opts) {
  RequireLiveProcess(pid);
  std::vector<Mapping> maps = ReadProcMaps(pid);
  Descriptor before = ReadDescriptor(TargetMemory(pid), maps);
  const DescPatch& known = RequirePatch(before, id, pid);
  if (known.state != static_cast<uint32_t>(PatchState::kActive)) return OpResult{known, 0, 0};

  // Restoring is one jump instruction back to old code: only a thread inside the jump's bytes
  // (which only a signal frame could hold) is in the way; threads in the new code finish there.
  std::vector<GuardedRange> ranges;
  for (uint32_t i = 0; i < known.function_count; ++i) {
    const DescFunction& f = known.functions[i];
    ranges.push_back({f.address + f.keep + 1, f.address + f.keep + f.length, Str(f.symbol, sizeof f.symbol)});
  }
  const uint64_t stub = ReadEntryPoint(pid);
  return WithRetries(pid, opts, [&](StoppedProcess& stopped, OpResult& result) -> std::optional<Conflict> {
    Descriptor desc = ReadDescriptor(stopped.memory(), maps);
    DescPatch& rec = RequirePatch(desc, id, pid);
    for (uint32_t i = 0; i < rec.function_count; ++i) {
      const DescFunction& f = rec.functions[i];
      const auto now = stopped.memory().Read(f.address + f.keep, f.length);
      if (std::memcmp(now.data(), f.jump, f.length) == 0) continue;
      for (const auto& other : desc.patches) {
        for (uint32_t j = 0; j < other.function_count; ++j) {
          const DescFunction& g = other.functions[j];
          if (g.address == f.address && g.length == f.length && std::memcmp(now.data(), g.jump, g.length) == 0) {
            throw EngineError("EREVERT_ORDER", "patch '" + Str(other.id, sizeof other.id) + "' was applied on top of '" + id +
                                                   "' on " + Str(f.symbol, sizeof f.symbol) + "; revert it first");
          }
        }
      }
      throw EngineError("ECODE_CHANGED", "the jump of patch '" + id + "' at " + Hex(f.address) + " (" +
                                             Str(f.symbol, sizeof f.symbol) + ") was overwritten by someone else; not restoring");
    }
    return SwitchJumps(stopped, maps, ranges, stub, desc, rec, PatchState::kInactive, result);
  });
}

OpResult UnloadPatch(pid_t pid, const std::string& id, const OpOptions& opts) {
  RequireLiveProcess(pid);
  std::vector<Mapping> maps = ReadProcMaps(pid);
  Descriptor before = ReadDescriptor(TargetMemory(pid), maps);
  const DescPatch& known = RequirePatch(before, id, pid);
  RequireMapped(known, maps);
  if (known.state == static_cast<uint32_t>(PatchState::kActive)) {
    throw EngineError("EPATCH_ACTIVE", "patch '" + id + "' is active in process " + std::to_string(pid) + "; revert it first");
  }
  std::vector<GuardedRange> ranges;
  for (uint32_t i = 0; i < known.mapping_count; ++i) {
    const DescMapping& m = known.mappings[i];
    if (m.prot & PROT_EXEC) ranges.push_back({m.addr, m.addr + m.length, "the code of patch '" + id + "'"});
  }
  for (const uint64_t slot : SlotsOf(known)) ranges.push_back({slot, slot + kTrampolineSlot, "a trampoline of patch '" + id + "'"});
  // Another patch stacked on this one keeps a jump into this code as its "original" bytes.
  for (const auto& other : before.patches) {
    for (uint32_t j = 0; j < other.function_count && &other != &known; ++j) {
      const DescFunction& g = other.functions[j];
      const uint64_t to = JumpDestination(before, g.address + g.keep, g.original, g.length);
      if (to >= known.base && to < known.base + known.span) {
        throw EngineError("EPATCH_IN_USE", "patch '" + Str(other.id, sizeof other.id) + "' was loaded on top of '" + id +
                                               "' and would jump back into it; unload it first");
      }
    }
  }
  const uint64_t stub = ReadEntryPoint(pid);
  std::optional<Unwinder> unwinder;
  std::optional<DlopenApi> dl;
  if (known.eh_frame != 0 || known.loader == static_cast<uint32_t>(Loader::kDlopen)) {
    ObjectCache own_cache;
    const TargetImage image(pid, opts.debug_dirs, opts.cache != nullptr ? *opts.cache : own_cache);
    if (known.eh_frame != 0) unwinder = FindUnwinder(image);
    if (unwinder) ranges.insert(ranges.end(), unwinder->busy.begin(), unwinder->busy.end());
    if (known.loader == static_cast<uint32_t>(Loader::kDlopen)) {
      dl = FindDlopen(image);
      ranges.push_back({known.base, known.base + known.span, "the code of patch '" + id + "'"});
    }
  }
  return WithRetries(pid, opts, [&](StoppedProcess& stopped, OpResult& result) -> std::optional<Conflict> {
    Descriptor desc = ReadDescriptor(stopped.memory(), maps);
    DescPatch& rec = RequirePatch(desc, id, pid);
    if (auto conflict = FindConflict(stopped, maps, ranges)) return conflict;
    // The unwinder must forget the tables before the memory holding them goes away.
    if (rec.eh_frame != 0 && unwinder) stopped.InjectCall(stub, unwinder->deregister_fn, rec.eh_frame);
    if (dl) {
      if (auto busy = PrepareLoaderCall(stopped, maps, *dl)) return busy;
      CallDlclose(stopped, stub, *dl, rec.dl_handle);
    }
    for (uint32_t i = 0; i < rec.mapping_count; ++i) {
      const long r = stopped.InjectSyscall(stub, SYS_munmap, static_cast<long>(rec.mappings[i].addr),
                                           static_cast<long>(rec.mappings[i].length));
      if (r < 0) throw EngineError("EINJECT", "the target could not unmap the patch: " + std::string(std::strerror(static_cast<int>(-r))));
    }
    result.record = rec;
    desc.patches.erase(desc.patches.begin() + (&rec - desc.patches.data()));
    for (const uint64_t page : PagesLeftUnused(result.record, desc)) {
      const long r = stopped.InjectSyscall(stub, SYS_munmap, static_cast<long>(page), static_cast<long>(kTrampolinePage));
      if (r < 0) throw EngineError("EINJECT", "the target could not unmap a trampoline page: " + std::string(std::strerror(static_cast<int>(-r))));
    }
    WriteDescriptor(stopped, stub, maps, desc);
    return std::nullopt;
  });
}

Descriptor ListPatches(pid_t pid) {
  RequireLiveProcess(pid);
  return ReadDescriptor(TargetMemory(pid), ReadProcMaps(pid));
}

uint64_t StopResume(pid_t pid) {
  StoppedProcess stopped(pid, Clock::now() + kStopTimeout);
  stopped.Resume();
  return stopped.PauseMicros();
}

}  // namespace hotpatch
