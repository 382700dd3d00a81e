#include "patch_ops.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "../engine_error.h"
#include "../loader/load_plan.h"
#include "../loader/target_image.h"
#include "../ptrace/errno_codes.h"
#include "../ptrace/proc_auxv.h"
#include "../ptrace/stopped_process.h"
#include "dlopen_api.h"
#include "redirect.h"
#include "return_wait.h"
#include "safety.h"

namespace hotpatch {
namespace {

constexpr auto kStopTimeout = std::chrono::seconds(2);
constexpr int kPlacementAttempts = 3;

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string Str(const char* field, size_t cap) { return std::string(field, strnlen(field, cap)); }

void CopyField(char* dst, size_t cap, const std::string& value, const char* what) {
  if (value.size() >= cap) {
    throw EngineError("EBAD_ARGUMENT", std::string(what) + " is longer than " + std::to_string(cap - 1) + " bytes: " + value);
  }
  std::memset(dst, 0, cap);
  std::memcpy(dst, value.data(), value.size());
}

DescPatch* FindPatch(Descriptor& desc, const std::string& id) {
  for (auto& p : desc.patches) {
    if (Str(p.id, sizeof p.id) == id) return &p;
  }
  return nullptr;
}

DescPatch& RequirePatch(Descriptor& desc, const std::string& id, pid_t pid) {
  DescPatch* p = FindPatch(desc, id);
  if (p == nullptr) throw EngineError("ENOPATCH", "process " + std::to_string(pid) + " has no patch '" + id + "'");
  return *p;
}

bool Cancelled(const OpOptions& opts) {
  return opts.cancelled != nullptr && opts.cancelled->load(std::memory_order_relaxed) != 0;
}

void Sleep(std::chrono::microseconds d) {
  timespec ts{static_cast<time_t>(d.count() / 1'000'000), static_cast<long>(d.count() % 1'000'000) * 1000};
  nanosleep(&ts, nullptr);
}

// Runs `attempt` inside a stop of every thread until it reports no conflict. A conflict means a
// thread is where we must not write: let the target run a little (so the thread can leave), with
// exponential backoff, and try again in a fresh, short stop until the deadline.
template <typename Attempt>
OpResult WithRetries(pid_t pid, const OpOptions& opts, Attempt attempt) {
  OpResult result{};
  const auto deadline = Clock::now() + opts.safety_timeout;
  auto backoff = std::chrono::microseconds(500);
  for (;;) {
    std::optional<StoppedProcess> holder;
    try {
      holder.emplace(pid, Clock::now() + kStopTimeout);
    } catch (const EngineError& e) {
      // Gone between two tries: say so plainly rather than "no such process".
      if (result.attempts > 0 && (e.code() == "ENOPROCESS" || e.code() == "EZOMBIE")) {
        throw EngineError("ETARGET_EXITED", "process " + std::to_string(pid) + " exited during the operation");
      }
      throw;
    }
    StoppedProcess& stopped = *holder;
    const std::optional<Conflict> conflict = attempt(stopped, result);
    stopped.Resume();
    result.pause_us = std::max(result.pause_us, stopped.PauseMicros());
    ++result.attempts;
    if (!conflict) return result;
    if (Clock::now() + backoff > deadline) {
      throw EngineError("EUNSAFE_TIMEOUT", DescribeConflict(pid, *conflict) + "; gave up after " +
                                               std::to_string(result.attempts) + " tries in " +
                                               std::to_string(opts.safety_timeout.count()) +
                                               " ms (retry later, or use consistency 'entry' if the function never returns)");
    }
    if (Cancelled(opts)) throw EngineError("ECANCELLED", "cancelled while waiting for a safe moment");
    Sleep(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(64'000));
  }
}

// The path under which the target itself can open the patch file. A target in another mount
// namespace (a container) does not see our file system: give it a copy inside its own root.
std::string TargetVisiblePath(pid_t pid, const std::string& so_path, const std::string& id) {
  struct stat ours {}, theirs {};
  if (::stat(so_path.c_str(), &ours) != 0) {
    throw EngineError("EBAD_ARGUMENT", "cannot read the patch file " + so_path + ": " + std::strerror(errno));
  }
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  if (::stat((root + so_path).c_str(), &theirs) == 0 && ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino) {
    return so_path;
  }
  const std::string inside = "/tmp/hotpatch-" + id + ".so";
  // Copied under a name of its own, then renamed over the old copy: a process that maps an earlier
  // copy keeps that file, instead of seeing it rewritten under its running code.
  const std::string staging = root + inside + "." + std::to_string(::getpid()) + "." + std::to_string(pid) + ".tmp";
  std::error_code ec;
  std::filesystem::copy_file(so_path, staging, std::filesystem::copy_options::overwrite_existing, ec);
  if (!ec) std::filesystem::rename(staging, root + inside, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(staging, ignored);
    // A process that just died loses its /proc/PID/root: that is no namespace problem.
    ThrowIfGone(pid, "loading the patch");
    throw EngineError("EMOUNT_NS", "process " + std::to_string(pid) + " is in another mount namespace and the patch " +
                                       "could not be copied to " + inside + " inside it: " + ec.message());
  }
  return inside;
}

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

struct PlannedFunction {
  ResolvedSymbol old_fn;
  uint64_t replacement;
  size_t keep;
  std::vector<uint8_t> jump;
};

// Where each old function will jump, and whether the jump fits: the replacement's address comes
// from the loaded patch, the bytes kept in front (endbr64) from the old function's entry.
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
    auto jump = EncodeJump(old_fns[i].address + keep, it->second);
    if (old_fns[i].size < keep + jump.size()) {
      throw EngineError("EFUNC_TOO_SHORT", "function " + f.symbol + " is " + std::to_string(old_fns[i].size) +
                                               " bytes long; the jump needs " + std::to_string(keep + jump.size()) +
                                               (old_fns[i].size == 0 ? " (its symbol has no size)" : ""));
    }
    planned.push_back({old_fns[i], it->second, keep, std::move(jump)});
  }
  return planned;
}

// Records each function in the patch's descriptor entry, with the bytes its jump will replace.
void FillFunctions(DescPatch& record, const PatchSpec& spec, const std::vector<PlannedFunction>& planned,
                   const TargetMemory& mem) {
  record.function_count = static_cast<uint32_t>(planned.size());
  for (size_t i = 0; i < planned.size(); ++i) {
    const auto& p = planned[i];
    DescFunction& f = record.functions[i];
    f.address = p.old_fn.address;
    f.size = p.old_fn.size;
    f.replacement = p.replacement;
    f.keep = static_cast<uint8_t>(p.keep);
    f.length = static_cast<uint8_t>(p.jump.size());
    f.consistency = static_cast<uint8_t>(spec.functions[i].consistency);
    const auto original = mem.Read(f.address + f.keep, f.length);
    std::memcpy(f.original, original.data(), f.length);
    std::memcpy(f.jump, p.jump.data(), f.length);
    CopyField(f.symbol, sizeof f.symbol, spec.functions[i].symbol, "symbol name");
  }
}

// Why a load attempt did not finish: its chosen place was taken meanwhile.
struct PlacementTaken {};
// ... or a thread sat where an injected call could deadlock on it.
struct Busy {
  Conflict conflict;
};

// The target's C++ unwinder (libgcc's), if it has one: where to register a patch's .eh_frame so
// that exceptions can be thrown through patch code, and the code that must be free to call it
// (its lock is only ever held inside that code).
struct Unwinder {
  uint64_t register_fn;
  uint64_t deregister_fn;
  std::vector<GuardedRange> busy;
};

// libgcc's frame registry: its entry points, and (by the object file its static functions came
// from) every function that runs with its lock held.
constexpr const char* kFrameRegistryEntries[] = {
    "__register_frame_info", "__register_frame_info_bases", "__register_frame_info_table",
    "__register_frame_info_table_bases", "__register_frame", "__register_frame_table",
    "__deregister_frame_info", "__deregister_frame_info_bases", "__deregister_frame", "_Unwind_Find_FDE"};

bool InFrameRegistry(const ElfSymbol& s) {
  if (s.bind == STB_LOCAL) return s.file.rfind("unwind-dw2-fde", 0) == 0;
  return std::any_of(std::begin(kFrameRegistryEntries), std::end(kFrameRegistryEntries),
                     [&](const char* e) { return s.name == e; });
}

// In a static program the unwinder is part of the executable, where some thread always is: taking
// the whole mapping as busy would make .eh_frame registration wait for ever. Its .symtab says which
// functions are the registry's; without them (stripped), the whole mapping it is.
std::vector<GuardedRange> UnwinderCode(const TargetImage& image, const Mapping& m, uint64_t reg) {
  for (const LoadedObject& obj : image.objects()) {
    if (!obj.is_executable || !obj.elf || reg < obj.start || reg >= obj.end) continue;
    std::vector<GuardedRange> out;
    bool covers_reg = false;
    for (const ElfSymbol& s : obj.elf->symbols) {
      if (s.type != STT_FUNC || s.shndx == SHN_UNDEF || s.table != SymbolTable::kSymtab || !InFrameRegistry(s)) continue;
      const uint64_t start = obj.bias + s.value, end = start + std::max<uint64_t>(s.size, 1);
      covers_reg = covers_reg || (reg >= start && reg < end);
      out.push_back({start, end, "the C++ unwinder's frame registry (" + s.name + ")"});
    }
    if (covers_reg) return out;
  }
  return {{m.start, m.end, "the C++ unwinder (" + m.path + ")"}};
}

std::optional<Unwinder> FindUnwinder(const TargetImage& image) {
  try {
    const ResolvedSymbol reg = image.Resolve("__register_frame_info");
    const ResolvedSymbol dereg = image.Resolve("__deregister_frame_info");
    for (const Mapping& m : image.maps()) {
      if (reg.address >= m.start && reg.address < m.end) {
        return Unwinder{reg.address, dereg.address, UnwinderCode(image, m, reg.address)};
      }
    }
  } catch (const EngineError& e) {
    if (e.code() != "ENOSYMBOL") throw;
  }
  return std::nullopt;  // a C program: nothing unwinds through the patch, nothing to register
}

// What LoadPatch has found out before it picks a loader.
struct LoadContext {
  const TargetImage& image;
  const PatchFile& patch;
  const std::vector<ResolvedSymbol>& old_fns;
  std::vector<Mapping>& maps;
  DescPatch record;  // id and path filled in
  std::string visible;
  uint64_t span;
  uint64_t stub;
};

// Picks a thread to run the target's loader on: one that is not inside the loader or the
// allocator itself (it could hold their locks and would then wait on itself), and lets every
// other thread run meanwhile, so that whoever holds a lock releases it: never a deadlock.
std::optional<Conflict> PrepareLoaderCall(StoppedProcess& stopped, std::vector<Mapping>& maps, const DlopenApi& api) {
  std::optional<Conflict> first;
  for (const ThreadState& t : stopped.threads()) {
    auto conflict = FindConflict(stopped, maps, api.busy, t.tid);
    if (!conflict) {
      stopped.UseForInjection(t.tid);
      stopped.ReleaseOthers();
      return std::nullopt;
    }
    if (!first) first = conflict;
  }
  return first;
}

// The target's own ld.so loads the patch (dlopen), so its unwinder, constructors and exception
// tables work as for any library.
OpResult LoadWithDlopen(pid_t pid, const PatchSpec& spec, const OpOptions& opts, LoadContext ctx) {
  const DlopenApi api = FindDlopen(ctx.image);
  uint64_t lo = UINT64_MAX;
  for (const auto& seg : ctx.patch.loads) lo = std::min(lo, seg.vaddr & ~uint64_t{4095});
  return WithRetries(pid, opts, [&](StoppedProcess& stopped, OpResult& result) -> std::optional<Conflict> {
    if (auto conflict = PrepareLoaderCall(stopped, ctx.maps, api)) return conflict;
    const uint64_t handle = CallDlopen(stopped, ctx.stub, api, ctx.visible);
    try {
      // A dlopen handle is the object's struct link_map, whose first field is its load bias.
      uint64_t bias = 0;
      const auto raw = stopped.memory().Read(handle, sizeof bias);
      std::memcpy(&bias, raw.data(), sizeof bias);
      std::map<std::string, uint64_t> exports;
      for (const auto& [name, value] : ctx.patch.exports) exports.emplace(name, bias + value);
      const std::vector<PlannedFunction> planned = PlanFunctions(spec, ctx.old_fns, exports, stopped.memory());
      DescPatch rec = ctx.record;
      rec.state = static_cast<uint32_t>(PatchState::kLoaded);
      rec.loader = static_cast<uint32_t>(Loader::kDlopen);
      rec.dl_handle = handle;
      rec.base = bias + lo;
      rec.span = ctx.span;
      FillFunctions(rec, spec, planned, stopped.memory());
      ctx.maps = ReadProcMaps(pid);
      Descriptor desc = ReadDescriptor(stopped.memory(), ctx.maps);
      rec.order = desc.next_order++;
      desc.patches.push_back(rec);
      WriteDescriptor(stopped, ctx.stub, ctx.maps, desc);
      result.record = rec;
    } catch (...) {
      try {
        CallDlclose(stopped, ctx.stub, api, handle);  // leave the process as it was
      } catch (const EngineError&) {
        // the original failure is what the caller needs to hear about
      }
      throw;
    }
    return std::nullopt;
  });
}

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

OpResult LoadPatch(pid_t pid, const PatchSpec& spec, const OpOptions& opts) {
  RequireLiveProcess(pid);
  if (spec.functions.empty() || spec.functions.size() > kMaxFunctionsPerPatch) {
    throw EngineError("EBAD_ARGUMENT", "a patch replaces 1 to " + std::to_string(kMaxFunctionsPerPatch) + " functions");
  }
  DescPatch record{};
  CopyField(record.id, sizeof record.id, spec.id, "patch id");

  ObjectCache own_cache;
  ObjectCache& cache = opts.cache != nullptr ? *opts.cache : own_cache;
  const TargetImage image(pid, opts.debug_dirs, cache);
  const std::shared_ptr<const PatchFile> patch = cache.Patch(spec.so_path);
  const TargetMemory probe(pid);
  std::vector<ResolvedSymbol> old_fns;
  for (const auto& f : spec.functions) old_fns.push_back(image.Resolve(f.symbol));

  std::vector<Mapping> maps = image.maps();  // read once, by TargetImage
  Descriptor existing = ReadDescriptor(probe, maps);
  if (FindPatch(existing, spec.id) != nullptr) {
    throw EngineError("EPATCH_EXISTS", "process " + std::to_string(pid) + " already has a patch '" + spec.id + "'");
  }
  const std::string visible = TargetVisiblePath(pid, spec.so_path, spec.id);
  CopyField(record.so_path, sizeof record.so_path, visible, "patch path");  // as the target sees it
  const uint64_t span = PatchSpan(*patch);
  const uint64_t stub = ReadEntryPoint(pid);
  if (spec.loader == Loader::kDlopen) {
    return LoadWithDlopen(pid, spec, opts, {image, *patch, old_fns, maps, record, visible, span, stub});
  }
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
    const std::vector<PlannedFunction> planned = PlanFunctions(spec, old_fns, plan.exports, probe);

    OpResult result{};
    try {
      StoppedProcess stopped(pid, Clock::now() + kStopTimeout);
      MappedGuard guard(stopped, stub);
      const uint64_t path_addr = stopped.Scratch(visible.size() + 1);
      stopped.memory().Write(path_addr, visible.c_str(), visible.size() + 1);
      const long fd = stopped.InjectSyscall(stub, SYS_openat, AT_FDCWD, static_cast<long>(path_addr), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        throw EngineError("EINJECT", "the target could not open the patch file " + visible + ": " + std::strerror(static_cast<int>(-fd)));
      }
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
        if (static_cast<uint64_t>(r) != m.addr) {
          failed = -EEXIST;  // an old kernel ignoring MAP_FIXED_NOREPLACE placed it elsewhere
          break;
        }
      }
      stopped.InjectSyscall(stub, SYS_close, fd);
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
      FillFunctions(record, spec, planned, stopped.memory());
      Descriptor desc = ReadDescriptor(stopped.memory(), maps);
      record.order = desc.next_order++;
      desc.patches.push_back(record);
      WriteDescriptor(stopped, stub, maps, desc);
      guard.Dismiss();
      stopped.Resume();
      result.pause_us = stopped.PauseMicros();
      result.attempts = 1;
      result.record = record;
      return result;
    } catch (const PlacementTaken&) {
      maps = ReadProcMaps(pid);  // the target mapped something there meanwhile: choose again
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

OpResult ActivatePatch(pid_t pid, const std::string& id, const OpOptions& opts) {
  RequireLiveProcess(pid);
  std::vector<Mapping> maps = ReadProcMaps(pid);
  Descriptor before = ReadDescriptor(TargetMemory(pid), maps);
  const DescPatch& known = RequirePatch(before, id, pid);
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
  const uint64_t stub = ReadEntryPoint(pid);
  ExactCheck check(pid, ranges, owners);  // before any stop: reads the objects and their CFI
  const auto deadline = Clock::now() + opts.safety_timeout;
  return WithRetries(pid, opts, [&](StoppedProcess& stopped, OpResult& result) -> std::optional<Conflict> {
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
  if (known.state == static_cast<uint32_t>(PatchState::kActive)) {
    throw EngineError("EPATCH_ACTIVE", "patch '" + id + "' is active in process " + std::to_string(pid) + "; revert it first");
  }
  std::vector<GuardedRange> ranges;
  for (uint32_t i = 0; i < known.mapping_count; ++i) {
    const DescMapping& m = known.mappings[i];
    if (m.prot & PROT_EXEC) ranges.push_back({m.addr, m.addr + m.length, "the code of patch '" + id + "'"});
  }
  // Another patch stacked on this one keeps a jump into this code as its "original" bytes.
  for (const auto& other : before.patches) {
    for (uint32_t j = 0; j < other.function_count && &other != &known; ++j) {
      const DescFunction& g = other.functions[j];
      const uint64_t to = DecodeJump(g.address + g.keep, g.original, g.length);
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
