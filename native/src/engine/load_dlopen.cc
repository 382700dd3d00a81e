// The dlopen loader: the target's ld.so loads the patch, called on a thread outside the loader and
// the allocator while the other threads run on.
#include <algorithm>
#include <cstring>

#include "dlopen_api.h"
#include "loaders.h"
#include "op_support.h"
#include "patch_delivery.h"

namespace hotpatch {

OpResult LoadWithDlopen(const PatchSpec& spec, const OpOptions& opts, LoadContext ctx) {
  const pid_t pid = ctx.session.pid;
  const DlopenApi api = FindDlopen(ctx.image);
  uint64_t lo = UINT64_MAX;
  for (const auto& seg : ctx.patch.loads) lo = std::min(lo, seg.vaddr & ~uint64_t{4095});
  return WithRetries(pid, opts, [&](StoppedProcess& stopped, OpResult& result) -> std::optional<Conflict> {
    std::vector<Mapping>& maps = ctx.session.maps;
    const uint64_t stub = ctx.session.stub;
    std::vector<long> in_use;  // the fds named by patches ld.so still has loaded
    for (const DescPatch& p : ReadDescriptor(stopped.memory(), maps).patches) {
      const std::string path = Str(p.so_path, sizeof p.so_path);
      if (p.loader == static_cast<uint32_t>(Loader::kDlopen) && path.rfind("/proc/self/fd/", 0) == 0) {
        in_use.push_back(std::strtol(path.c_str() + 14, nullptr, 10));
      }
    }
    const TargetPatchFd file(stopped, stub, ctx.bytes, spec.id, in_use);
    if (auto conflict = PrepareLoaderCall(stopped, maps, api)) return conflict;
    const uint64_t handle = CallDlopen(stopped, stub, api, file.DlopenPath());
    try {
      // A dlopen handle is the object's struct link_map, whose first field is its load bias.
      uint64_t bias = 0;
      const auto raw = stopped.memory().Read(handle, sizeof bias);
      std::memcpy(&bias, raw.data(), sizeof bias);
      std::map<std::string, uint64_t> exports;
      for (const auto& [name, value] : ctx.patch.exports) exports.emplace(name, bias + value);
      std::vector<PlannedFunction> planned = PlanFunctions(spec, ctx.old_fns, exports, stopped.memory());
      maps = ReadProcMaps(pid);  // the target's loader mapped what it needed
      Descriptor desc = ReadDescriptor(stopped.memory(), maps);
      TrampolineSlots slots(stopped, stub, maps, desc);
      ChooseJumps(planned, slots);
      DescPatch rec = ctx.record;
      CopyField(rec.so_path, sizeof rec.so_path, file.DlopenPath(), "patch path");  // the name ld.so keeps
      rec.state = static_cast<uint32_t>(PatchState::kLoaded);
      rec.loader = static_cast<uint32_t>(Loader::kDlopen);
      rec.dl_handle = handle;
      rec.base = bias + lo;
      rec.span = ctx.span;
      FillFunctions(rec, spec, planned, stopped.memory());
      rec.order = desc.next_order++;
      desc.patches.push_back(rec);
      WriteDescriptor(stopped, stub, maps, desc);
      slots.Commit();
      ctx.session.desc = desc;
      result.record = rec;
    } catch (...) {
      try {
        CallDlclose(stopped, stub, api, handle);  // leave the process as it was
      } catch (const EngineError&) {
        // the original failure is what the caller needs to hear about
      }
      throw;
    }
    return std::nullopt;
  });
}

}  // namespace hotpatch
