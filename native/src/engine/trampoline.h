// Near trampolines: when a replacement lies beyond rel32 reach of the old function, the 5-byte jump
// at the old entry goes to a 16-byte slot of a page placed within ±2 GiB of it, and the slot jumps
// on with an absolute jump. Pages are shared by every patch of a process; the descriptor's functions
// record their slots, so the pages in use are exactly those the descriptor names, and a page is
// freed when the last patch using it is unloaded.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <vector>

#include "../proc_maps.h"
#include "descriptor.h"

namespace hotpatch {

class StoppedProcess;

constexpr uint64_t kTrampolinePage = 4096;
constexpr uint64_t kTrampolineSlot = 16;  // a 14-byte `jmp *0(%rip); .quad target`, padded with int3

// Hands out slots inside one stop. Pages it mapped are unmapped again when it is destroyed
// without Commit() (a failed load leaves no page behind).
class TrampolineSlots {
 public:
  // `desc`: every patch the process carries now (their slots are taken); `maps` is kept up to date.
  TrampolineSlots(StoppedProcess& stopped, uint64_t stub, std::vector<Mapping>& maps, const Descriptor& desc);
  ~TrampolineSlots();
  TrampolineSlots(const TrampolineSlots&) = delete;
  TrampolineSlots& operator=(const TrampolineSlots&) = delete;

  // A slot, reachable by an E9 rel32 at `site`, that jumps to `target`; on a page already in use
  // when one is near enough, else on a new page mapped near `site`. nullopt when no free address
  // range lies within reach.
  std::optional<uint64_t> Place(uint64_t site, uint64_t target);
  void Commit() { created_.clear(); }

 private:
  std::optional<uint64_t> FreeSlotNear(uint64_t site) const;
  std::optional<uint64_t> MapPageNear(uint64_t site);

  StoppedProcess& stopped_;
  uint64_t stub_;
  std::vector<Mapping>& maps_;
  std::set<uint64_t> pages_;
  std::set<uint64_t> used_;
  std::vector<uint64_t> created_;
};

// Every slot the patch's functions jump through.
std::vector<uint64_t> SlotsOf(const DescPatch& patch);

// The pages `removed` used that no patch of `remaining` uses: to unmap once `removed` is gone.
std::vector<uint64_t> PagesLeftUnused(const DescPatch& removed, const Descriptor& remaining);

// Where a jump at `site` ends up, following a trampoline slot of `desc` if it goes through one.
uint64_t JumpDestination(const Descriptor& desc, uint64_t site, const uint8_t* bytes, size_t len);

}  // namespace hotpatch
