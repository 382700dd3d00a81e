// Reading an object's TLS block from its struct link_map in the target.
#include "tls.h"

#include <elf.h>

#include <array>

#include "../engine_error.h"

namespace hotpatch {
namespace {

constexpr size_t kScanWords = 512;        // struct link_map is about 1.1 KiB; its TLS fields lie well inside 4 KiB
constexpr int64_t kNoTlsOffset = 0;       // glibc's NO_TLS_OFFSET on x86-64
constexpr int64_t kForcedDynamic = -1;    // FORCED_DYNAMIC_TLS_OFFSET
constexpr uint64_t kMaxModid = 1 << 20;   // far more modules than any process loads

[[noreturn]] void Unreadable(const LoadedObject& obj, const std::string& why) {
  throw EngineError("EUNSUPPORTED_PATCH", "cannot find the thread-local storage of " + obj.path + " in the target: " + why);
}

}  // namespace

TlsBlock ReadTlsBlock(const TargetMemory& mem, const LoadedObject& obj) {
  const ElfProgramHeader* tls = nullptr;
  if (obj.elf) {
    for (const auto& ph : obj.elf->program_headers) {
      if (ph.type == PT_TLS && ph.memsz > 0) tls = &ph;
    }
  }
  if (tls == nullptr) Unreadable(obj, "it has no TLS segment");
  if (obj.link_map == 0) Unreadable(obj, "the dynamic linker does not list it");
  std::array<uint64_t, kScanWords> words{};
  const size_t got = mem.ReadSome(obj.link_map, reinterpret_cast<uint8_t*>(words.data()), sizeof words) / sizeof(uint64_t);
  // ld.so stores the init image's address biased (a library, a PIE since glibc 2.26) or not.
  const uint64_t image_biased = obj.bias + tls->vaddr, image_raw = tls->vaddr;
  for (size_t i = 0; i + 6 < got; ++i) {
    if ((words[i] != image_biased && words[i] != image_raw) || words[i + 1] != tls->filesz ||
        words[i + 2] != tls->memsz || words[i + 3] != tls->align) {
      continue;
    }
    const auto offset = static_cast<int64_t>(words[i + 5]);
    const uint64_t modid = words[i + 6];
    if (modid == 0 || modid > kMaxModid) Unreadable(obj, "its module id reads " + std::to_string(modid));
    TlsBlock block{modid, std::nullopt};
    if (offset != kNoTlsOffset && offset != kForcedDynamic) block.static_offset = offset;
    return block;
  }
  Unreadable(obj, "its link_map does not hold the TLS fields of this glibc layout");
}

}  // namespace hotpatch
