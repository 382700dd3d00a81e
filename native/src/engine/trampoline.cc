// Near trampoline pages: placement, slot allocation, and which pages an unload frees.
#include "trampoline.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>

#include "../engine_error.h"
#include "../loader/load_plan.h"
#include "../ptrace/stopped_process.h"
#include "redirect.h"

namespace hotpatch {
namespace {

constexpr int kPlacementAttempts = 3;

uint64_t PageOf(uint64_t slot) { return slot & ~(kTrampolinePage - 1); }

std::vector<uint8_t> SlotBytes(uint64_t target) {
  std::vector<uint8_t> out(kTrampolineSlot, 0xcc);  // int3 after the jump: nothing falls through
  const std::vector<uint8_t> jump = EncodeAbsoluteJump(target);
  std::memcpy(out.data(), jump.data(), jump.size());
  return out;
}

}  // namespace

TrampolineSlots::TrampolineSlots(StoppedProcess& stopped, uint64_t stub, std::vector<Mapping>& maps, const Descriptor& desc)
    : stopped_(stopped), stub_(stub), maps_(maps) {
  for (const DescPatch& p : desc.patches) {
    for (const uint64_t slot : SlotsOf(p)) {
      used_.insert(slot);
      pages_.insert(PageOf(slot));
    }
  }
}

TrampolineSlots::~TrampolineSlots() {
  for (const uint64_t page : created_) {
    try {
      stopped_.InjectSyscall(stub_, SYS_munmap, static_cast<long>(page), static_cast<long>(kTrampolinePage));
    } catch (...) {
      // The target is gone or refuses: nothing more can be undone.
    }
  }
}

std::optional<uint64_t> TrampolineSlots::Place(uint64_t site, uint64_t target) {
  std::optional<uint64_t> slot = FreeSlotNear(site);
  if (!slot) {
    const std::optional<uint64_t> page = MapPageNear(site);
    if (!page) return std::nullopt;
    slot = *page;
  }
  stopped_.memory().Write(*slot, SlotBytes(target));
  used_.insert(*slot);
  return slot;
}

std::optional<uint64_t> TrampolineSlots::FreeSlotNear(uint64_t site) const {
  for (const uint64_t page : pages_) {
    if (!InRel32Reach(site, page) || !InRel32Reach(site, page + kTrampolinePage - kTrampolineSlot)) continue;
    for (uint64_t slot = page; slot < page + kTrampolinePage; slot += kTrampolineSlot) {
      if (!used_.contains(slot)) return slot;
    }
  }
  return std::nullopt;
}

std::optional<uint64_t> TrampolineSlots::MapPageNear(uint64_t site) {
  for (int attempt = 0; attempt < kPlacementAttempts; ++attempt) {
    const std::optional<uint64_t> hint = ChooseBase(maps_, site, kTrampolinePage);
    if (!hint) return std::nullopt;
    const long r = stopped_.InjectSyscall(stub_, SYS_mmap, static_cast<long>(*hint), static_cast<long>(kTrampolinePage),
                                          PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (r >= 0 || r <= -4096) {
      const uint64_t page = static_cast<uint64_t>(r);
      if (page == *hint) {
        created_.push_back(page);
        pages_.insert(page);
        maps_.push_back({page, page + kTrampolinePage, "r-xp", 0, "00:00", 0, ""});
        return page;
      }
      // An old kernel ignoring MAP_FIXED_NOREPLACE placed it elsewhere: give it back, choose again.
      stopped_.InjectSyscall(stub_, SYS_munmap, r, static_cast<long>(kTrampolinePage));
    } else if (r != -EEXIST) {
      throw EngineError("EINJECT", "the target could not map a trampoline page: " + std::string(std::strerror(static_cast<int>(-r))));
    }
    maps_ = ReadProcMaps(stopped_.pid());  // the target mapped something there meanwhile
  }
  return std::nullopt;
}

std::vector<uint64_t> SlotsOf(const DescPatch& patch) {
  std::vector<uint64_t> out;
  for (uint32_t i = 0; i < patch.function_count && i < kMaxFunctionsPerPatch; ++i) {
    if (patch.functions[i].trampoline != 0) out.push_back(patch.functions[i].trampoline);
  }
  return out;
}

std::vector<uint64_t> PagesLeftUnused(const DescPatch& removed, const Descriptor& remaining) {
  std::set<uint64_t> still;
  for (const DescPatch& p : remaining.patches) {
    for (const uint64_t slot : SlotsOf(p)) still.insert(PageOf(slot));
  }
  std::set<uint64_t> out;
  for (const uint64_t slot : SlotsOf(removed)) {
    if (!still.contains(PageOf(slot))) out.insert(PageOf(slot));
  }
  return {out.begin(), out.end()};
}

uint64_t JumpDestination(const Descriptor& desc, uint64_t site, const uint8_t* bytes, size_t len) {
  const uint64_t to = DecodeJump(site, bytes, len);
  for (const DescPatch& p : desc.patches) {
    for (uint32_t i = 0; i < p.function_count && i < kMaxFunctionsPerPatch; ++i) {
      if (to != 0 && p.functions[i].trampoline == to) return p.functions[i].replacement;
    }
  }
  return to;
}

}  // namespace hotpatch
