// The mmap loader: the engine maps the patch into the target itself with injected system calls,
// applies its relocations and registers its unwind tables; no code of the target runs.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>

#include "../loader/load_plan.h"
#include "frame_registry.h"
#include "loaders.h"
#include "op_support.h"
#include "patch_delivery.h"

namespace hotpatch {
namespace {

constexpr int kPlacementAttempts = 3;

// Undoes the mappings of a failed load, so that a failed operation leaves no mapping behind.
class MappedGuard {
 public:
  MappedGuard(StoppedProcess& stopped, uint64_t stub) : stopped_(stopped), stub_(stub) {}
  ~MappedGuard() {
    for (const auto& [addr, len] : mapped_) {
      try {
        stopped_.InjectSyscall(stub_, SYS_munmap, static_cast<long>(addr), static_cast<long>(len));
      } catch (...) {
        // The target is gone or refuses: nothing more can be undone.
      }
    }
  }
  void Add(uint64_t addr, uint64_t len) { mapped_.emplace_back(addr, len); }
  void Dismiss() { mapped_.clear(); }

 private:
  StoppedProcess& stopped_;
  uint64_t stub_;
  std::vector<std::pair<uint64_t, uint64_t>> mapped_;
};

// Why a load attempt did not finish: its chosen place was taken meanwhile.
struct PlacementTaken {};
// ... or a thread sat where an injected call could deadlock on it.
struct Busy {
  Conflict conflict;
};

}  // namespace

OpResult LoadWithMmap(const PatchSpec& spec, const OpOptions& opts, LoadContext ctx) {
  ProcessSession& session = ctx.session;
  const pid_t pid = session.pid;
  const TargetImage& image = ctx.image;
  const PatchFile* patch = &ctx.patch;
  const std::vector<ResolvedSymbol>& old_fns = ctx.old_fns;
  std::vector<Mapping>& maps = session.maps;
  DescPatch record = ctx.record;
  const uint64_t span = ctx.span;
  const uint64_t stub = session.stub;
  const TargetMemory probe(pid);
  const std::optional<Unwinder> unwinder = patch->eh_frame != 0 ? FindUnwinder(image) : std::nullopt;
  const auto deadline = Clock::now() + opts.safety_timeout;
  auto backoff = std::chrono::microseconds(500);

  for (int placement = 0; placement < kPlacementAttempts;) {
    // Near the first old function when there is room (5-byte jumps), else anywhere (14-byte ones).
    std::optional<uint64_t> base = opts.far ? std::nullopt : ChooseBase(maps, old_fns.front().address, span);
    if (!base) base = ChooseAnyBase(maps, span);
    if (!base) {
      throw EngineError("ENOSPACE", "no free address range of " + std::to_string(span) + " bytes in process " +
                                        std::to_string(pid));
    }
    const LoadPlan plan = PlanLoad(image, *patch, spec.so_path, *base);
    if (plan.mappings.size() > kMaxMappingsPerPatch) {
      throw EngineError("EUNSUPPORTED_PATCH", "the patch needs more than " + std::to_string(kMaxMappingsPerPatch) + " mappings");
    }
    std::vector<PlannedFunction> planned = PlanFunctions(spec, old_fns, plan.exports, probe);

    OpResult result{};
    try {
      StoppedProcess stopped(pid, Clock::now() + kStopTimeout);
      MappedGuard guard(stopped, stub);
      std::optional<TargetPatchFd> file(std::in_place, stopped, stub, ctx.bytes, spec.id);
      const long fd = file->fd();
      long failed = 0;
      for (const auto& m : plan.mappings) {
        const int flags = MAP_PRIVATE | MAP_FIXED_NOREPLACE | (m.anonymous ? MAP_ANONYMOUS : 0);
        const long r = stopped.InjectSyscall(stub, SYS_mmap, static_cast<long>(m.addr), static_cast<long>(m.length), m.prot, flags,
                                             m.anonymous ? -1 : fd, static_cast<long>(m.file_offset));
        if (r < 0 && r > -4096) {
          failed = r;
          break;
        }
        guard.Add(static_cast<uint64_t>(r), m.length);
        maps.push_back({m.addr, m.addr + m.length, PermsOf(m.prot), m.file_offset, "", 0, m.anonymous ? "" : Str(record.so_path, sizeof record.so_path)});
        if (static_cast<uint64_t>(r) != m.addr) {
          failed = -EEXIST;  // an old kernel ignoring MAP_FIXED_NOREPLACE placed it elsewhere
          break;
        }
      }
      file.reset();  // the mappings keep the memfd
      if (failed == -EEXIST) throw PlacementTaken{};
      if (failed < 0) {
        throw EngineError("EINJECT", "the target could not map the patch: " + std::string(std::strerror(static_cast<int>(-failed))));
      }
      for (const auto& w : plan.writes) stopped.memory().Write(w.addr, w.bytes);
      if (unwinder && plan.eh_frame != 0) {
        if (auto c = FindConflict(stopped, maps, unwinder->busy)) throw Busy{*c};
        stopped.InjectCall(stub, unwinder->register_fn, plan.eh_frame, plan.unwind_object);
        record.eh_frame = plan.eh_frame;
      }

      record.state = static_cast<uint32_t>(PatchState::kLoaded);
      record.base = plan.base;
      record.span = plan.span;
      record.mapping_count = static_cast<uint32_t>(plan.mappings.size());
      for (size_t i = 0; i < plan.mappings.size(); ++i) {
        record.mappings[i] = {plan.mappings[i].addr, plan.mappings[i].length, static_cast<uint32_t>(plan.mappings[i].prot), 0};
      }
      Descriptor desc = ReadDescriptor(stopped.memory(), maps);
      TrampolineSlots slots(stopped, stub, maps, desc);
      ChooseJumps(planned, slots);
      FillFunctions(record, spec, planned, stopped.memory());
      record.order = desc.next_order++;
      desc.patches.push_back(record);
      WriteDescriptor(stopped, stub, maps, desc);
      slots.Commit();
      guard.Dismiss();
      session.desc = desc;
      stopped.Resume();
      result.pause_us = stopped.PauseMicros();
      result.attempts = 1;
      result.record = record;
      return result;
    } catch (const PlacementTaken&) {
      maps = ReadProcMaps(pid);  // the target mapped something there meanwhile (or a failed map left ours): choose again
      ++placement;
    } catch (const Busy& busy) {
      if (Clock::now() + backoff > deadline) {
        throw EngineError("EUNSAFE_TIMEOUT", DescribeConflict(pid, busy.conflict) +
                                                 "; registering the patch's unwind tables must wait for it");
      }
      if (Cancelled(opts)) throw EngineError("ECANCELLED", "cancelled while waiting for a safe moment");
      Sleep(backoff);
      backoff = std::min(backoff * 2, std::chrono::microseconds(64'000));
    }
  }
  throw EngineError("ENOSPACE", "the target kept taking the address range chosen for the patch; try again");
}

}  // namespace hotpatch
