// Finding the target's unwinder and the code that runs with its lock held.
#include "frame_registry.h"

#include <elf.h>

#include <algorithm>
#include <iterator>

#include "../engine_error.h"

namespace hotpatch {
namespace {

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

}  // namespace

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

}  // namespace hotpatch
