#include "load_plan.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <set>

#include "../engine_error.h"
#include "../fd.h"
#include "../safe_open.h"

namespace hotpatch {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kLowest = 0x10000;              // vm.mmap_min_addr
constexpr uint64_t kHighest = 0x7ffffffff000;      // top of the x86-64 user address space
constexpr int64_t kReach = (int64_t{1} << 31) - (int64_t{1} << 24);  // rel32 reach, with a margin

uint64_t PageDown(uint64_t v) { return v & ~(kPage - 1); }
uint64_t PageUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

struct ElfDeleter {
  void operator()(Elf* e) const { elf_end(e); }
};

[[noreturn]] void Bad(const std::string& path, const std::string& what) { throw EngineError("EBAD_ELF", path + ": " + what); }

}  // namespace

PatchFile ReadPatch(const std::string& path) {
  elf_version(EV_CURRENT);
  const UniqueFd fd = OpenRegularFile(path);
  std::unique_ptr<Elf, ElfDeleter> elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) Bad(path, "not an ELF file");
  GElf_Ehdr eh;
  if (gelf_getehdr(elf.get(), &eh) == nullptr) Bad(path, elf_errmsg(-1));
  if (gelf_getclass(elf.get()) != ELFCLASS64 || eh.e_machine != EM_X86_64) {
    Bad(path, "built for machine " + std::to_string(eh.e_machine) + " (class " +
                  std::to_string(gelf_getclass(elf.get())) + "); a patch must be a 64-bit x86-64 object");
  }
  if (eh.e_type != ET_DYN) Bad(path, "not a shared object (build the patch with -shared -fPIC)");
  size_t file_size = 0;
  elf_rawfile(elf.get(), &file_size);

  PatchFile out;
  bool defines_tls = false;
  std::set<std::string> tls_names;  // thread-local variables the patch defines, for the refusal
  size_t phnum = 0;
  if (elf_getphdrnum(elf.get(), &phnum) != 0) Bad(path, elf_errmsg(-1));
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf.get(), static_cast<int>(i), &ph) == nullptr) Bad(path, elf_errmsg(-1));
    defines_tls = defines_tls || ph.p_type == PT_TLS;
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_offset + ph.p_filesz > file_size) Bad(path, "a segment runs past the end of the file (truncated?)");
    if ((ph.p_vaddr - ph.p_offset) % kPage != 0) Bad(path, "a segment's address and file offset disagree modulo the page size");
    out.loads.push_back({ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz, ph.p_flags});
  }
  if (out.loads.empty()) Bad(path, "no loadable segment");

  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf.get(), &shstrndx) != 0) Bad(path, elf_errmsg(-1));
  for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn; scn = elf_nextscn(elf.get(), scn)) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) == nullptr) Bad(path, elf_errmsg(-1));
    const char* section = elf_strptr(elf.get(), shstrndx, sh.sh_name);
    // An .eh_frame holding more than its terminator means unwinding tables worth registering.
    if (section && std::strcmp(section, ".eh_frame") == 0 && (sh.sh_flags & SHF_ALLOC) && sh.sh_size > 4) {
      out.eh_frame = sh.sh_addr;
    }
    if (sh.sh_type != SHT_NOBITS && sh.sh_offset + sh.sh_size > file_size) Bad(path, "a section runs past the end of the file (truncated?)");
    if (sh.sh_type == SHT_DYNSYM || sh.sh_type == SHT_SYMTAB) {
      Elf_Data* data = elf_getdata(scn, nullptr);
      const size_t n = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
      for (size_t i = 1; data && i < n; ++i) {
        GElf_Sym sym;
        if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) continue;
        const int type = GELF_ST_TYPE(sym.st_info);
        const char* name = elf_strptr(elf.get(), sh.sh_link, sym.st_name);
        if (type == STT_GNU_IFUNC && sym.st_shndx != SHN_UNDEF) {
          throw EngineError("EUNSUPPORTED_PATCH", path + " defines the IFUNC '" + std::string(name ? name : "?") +
                                                      "'; choosing its implementation would run code in the target");
        }
        if (type == STT_TLS && sym.st_shndx != SHN_UNDEF && name && *name) tls_names.insert(name);
        if (sym.st_shndx == SHN_UNDEF || (type != STT_FUNC && type != STT_OBJECT)) continue;
        if (name && *name) out.exports.emplace(name, sym.st_value);  // .dynsym first: it wins
      }
    }
    // Dynamic relocations live in allocated SHT_RELA sections (.rela.dyn, .rela.plt).
    if (sh.sh_type == SHT_REL) throw EngineError("EUNSUPPORTED_RELOC", path + " uses REL relocations; x86-64 patches use RELA");
    if (sh.sh_type != SHT_RELA || !(sh.sh_flags & SHF_ALLOC)) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    Elf_Scn* symscn = elf_getscn(elf.get(), sh.sh_link);
    GElf_Shdr symsh;
    if (!data || !symscn || gelf_getshdr(symscn, &symsh) == nullptr) Bad(path, "a relocation section has no symbol table");
    Elf_Data* syms = elf_getdata(symscn, nullptr);
    const size_t n = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
    for (size_t i = 0; i < n; ++i) {
      GElf_Rela r;
      if (gelf_getrela(data, static_cast<int>(i), &r) == nullptr) Bad(path, elf_errmsg(-1));
      PatchRelocation rel{r.r_offset, static_cast<uint32_t>(GELF_R_TYPE(r.r_info)), r.r_addend, "", false, 0, false};
      if (const size_t symi = GELF_R_SYM(r.r_info); symi != 0) {
        GElf_Sym sym;
        if (!syms || gelf_getsym(syms, static_cast<int>(symi), &sym) == nullptr) Bad(path, "a relocation names a missing symbol");
        const char* name = elf_strptr(elf.get(), symsh.sh_link, sym.st_name);
        rel.symbol = name ? name : "";
        rel.defined = sym.st_shndx != SHN_UNDEF;
        rel.value = sym.st_value;
        rel.weak = GELF_ST_BIND(sym.st_info) == STB_WEAK;
      }
      out.relocations.push_back(std::move(rel));
    }
  }
  if (defines_tls) {
    std::string names;
    for (const auto& n : tls_names) names += (names.empty() ? " (" : ", ") + n;
    throw EngineError("EUNSUPPORTED_PATCH", path + " defines thread-local variables" + (names.empty() ? "" : names + ")") +
                                                "; a live patch cannot add thread-local storage to running threads. " +
                                                "Declare them `extern` to use the target's own, or keep the state elsewhere");
  }
  return out;
}

namespace {

std::pair<uint64_t, uint64_t> Extent(const PatchFile& p) {
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const auto& s : p.loads) {
    lo = std::min(lo, PageDown(s.vaddr));
    hi = std::max(hi, PageUp(s.vaddr + s.memsz));
  }
  return {lo, hi};
}

int Prot(uint32_t flags) {
  return ((flags & PF_R) ? PROT_READ : 0) | ((flags & PF_W) ? PROT_WRITE : 0) | ((flags & PF_X) ? PROT_EXEC : 0);
}

template <typename T>
MemoryWrite Word(uint64_t addr, T value) {
  MemoryWrite w{addr, std::vector<uint8_t>(sizeof value)};
  std::memcpy(w.bytes.data(), &value, sizeof value);
  return w;
}

const char* RelocName(uint32_t type);

// A GOT word of a relocation against a thread-local variable of the target: its module id and
// offset for general dynamic access (through the target's __tls_get_addr), or its offset from the
// thread pointer for initial-exec access, which only static TLS has. The patch defines no TLS of
// its own (ReadPatch refuses that), so every such symbol is the target's.
MemoryWrite TlsWord(const TargetImage& target, const PatchRelocation& r, uint64_t where, const std::string& so_path) {
  if (r.symbol.empty() || r.defined) {
    throw EngineError("EUNSUPPORTED_RELOC", so_path + ": relocation " + std::string(RelocName(r.type)) +
                                                " refers to thread-local storage of the patch itself");
  }
  const ResolvedTls tls = target.ResolveTls(r.symbol);
  switch (r.type) {
    case R_X86_64_DTPMOD64:
      return Word<uint64_t>(where, tls.modid);
    case R_X86_64_DTPOFF64:
      return Word<uint64_t>(where, tls.offset + static_cast<uint64_t>(r.addend));
    default:  // R_X86_64_TPOFF64, x86-64's variant II: the block lies below the thread pointer
      if (!tls.static_offset) {
        throw EngineError("EUNSUPPORTED_RELOC", so_path + ": the initial-exec access to '" + r.symbol + "' needs " +
                                                    tls.object + " to have static TLS, and it was dlopen'ed; rebuild " +
                                                    "the patch with -ftls-model=global-dynamic");
      }
      return Word<uint64_t>(where, tls.offset + static_cast<uint64_t>(r.addend) - static_cast<uint64_t>(*tls.static_offset));
  }
}

const char* RelocName(uint32_t type) {
  switch (type) {
    case R_X86_64_COPY: return "R_X86_64_COPY";
    case R_X86_64_IRELATIVE: return "R_X86_64_IRELATIVE";
    case R_X86_64_DTPMOD64: return "R_X86_64_DTPMOD64";
    case R_X86_64_DTPOFF64: return "R_X86_64_DTPOFF64";
    case R_X86_64_TPOFF64: return "R_X86_64_TPOFF64";
    case R_X86_64_TPOFF32: return "R_X86_64_TPOFF32";
    default: return "type";
  }
}

}  // namespace

uint64_t PatchSpan(const PatchFile& patch) {
  const auto [lo, hi] = Extent(patch);
  return hi - lo;
}

LoadPlan PlanLoad(const TargetImage& target, const PatchFile& patch, const std::string& so_path, uint64_t base) {
  const auto [lo, hi] = Extent(patch);
  // `bias` is what st_values and r_offsets of the patch are relative to, once placed at `base`.
  const uint64_t bias = base - lo;
  LoadPlan plan{so_path, base, hi - lo, {}, {}, {}, 0, 0};

  uint64_t mapped_to = 0;
  for (const PatchSegment& s : patch.loads) {
    const uint64_t start = bias + PageDown(s.vaddr);
    const uint64_t file_end = bias + PageUp(s.vaddr + s.filesz);
    const uint64_t mem_end = bias + PageUp(s.vaddr + s.memsz);
    if (start < mapped_to) {
      throw EngineError("EUNSUPPORTED_PATCH", so_path + " has segments sharing a page; link it with -z separate-code");
    }
    if (file_end > start) plan.mappings.push_back({start, file_end - start, Prot(s.flags), PageDown(s.offset), false});
    // The file's last page holds whatever follows the segment in the file: the .bss part of it must be zero.
    if (s.memsz > s.filesz && PageUp(s.vaddr + s.filesz) != s.vaddr + s.filesz && s.filesz > 0) {
      const uint64_t tail = bias + s.vaddr + s.filesz;
      plan.writes.push_back({tail, std::vector<uint8_t>(std::min(file_end, bias + s.vaddr + s.memsz) - tail, 0)});
    }
    if (mem_end > file_end) plan.mappings.push_back({file_end, mem_end - file_end, Prot(s.flags), 0, true});
    mapped_to = mem_end;
  }

  for (const auto& [name, value] : patch.exports) plan.exports.emplace(name, bias + value);
  if (patch.eh_frame != 0) {
    // One page of our own for the unwinder's bookkeeping (libgcc's `struct object`), so that
    // registering the tables allocates nothing inside the target.
    plan.eh_frame = bias + patch.eh_frame;
    plan.unwind_object = base + plan.span;
    plan.mappings.push_back({plan.unwind_object, kPage, PROT_READ | PROT_WRITE, 0, true});
    plan.span += kPage;
  }

  for (const PatchRelocation& r : patch.relocations) {
    switch (r.type) {
      case R_X86_64_NONE: case R_X86_64_RELATIVE: case R_X86_64_64: case R_X86_64_GLOB_DAT:
      case R_X86_64_JUMP_SLOT: case R_X86_64_PC32: case R_X86_64_PLT32:
        break;
      case R_X86_64_DTPMOD64: case R_X86_64_DTPOFF64: case R_X86_64_TPOFF64:
        plan.writes.push_back(TlsWord(target, r, bias + r.offset, so_path));
        continue;
      default:
        throw EngineError("EUNSUPPORTED_RELOC", so_path + ": relocation " + std::string(RelocName(r.type)) + " (" +
                                                    std::to_string(r.type) + ")" +
                                                    (r.symbol.empty() ? "" : " against '" + r.symbol + "'") +
                                                    " is not supported by the mmap loader");
    }
    const uint64_t where = bias + r.offset;
    uint64_t sym = 0;
    if (!r.symbol.empty()) {
      if (r.defined) {
        sym = bias + r.value;
      } else {
        try {
          sym = target.Resolve(r.symbol).address;
        } catch (const EngineError& e) {
          if (!(r.weak && e.code() == "ENOSYMBOL")) throw;  // an undefined weak symbol is 0, as ld.so does
        }
      }
    }
    switch (r.type) {
      case R_X86_64_NONE:
        break;
      case R_X86_64_RELATIVE:
        plan.writes.push_back(Word<uint64_t>(where, bias + static_cast<uint64_t>(r.addend)));
        break;
      case R_X86_64_64:
        plan.writes.push_back(Word<uint64_t>(where, sym + static_cast<uint64_t>(r.addend)));
        break;
      case R_X86_64_GLOB_DAT:
      case R_X86_64_JUMP_SLOT:
        // Bound now, once: the target's ld.so never learns about this object, so no lazy binding.
        plan.writes.push_back(Word<uint64_t>(where, sym));
        break;
      case R_X86_64_PC32:
      case R_X86_64_PLT32: {
        // S + A - P must fit in a signed 32-bit field: the target symbol must lie within ±2 GiB.
        const int64_t v = static_cast<int64_t>(sym + static_cast<uint64_t>(r.addend) - where);
        if (v < INT32_MIN || v > INT32_MAX) {
          throw EngineError("EUNSUPPORTED_RELOC", "a PC-relative relocation to '" + r.symbol + "' is out of range from " +
                                                      "where the patch was placed; rebuild the patch with -fPIC");
        }
        plan.writes.push_back(Word<int32_t>(where, static_cast<int32_t>(v)));
        break;
      }
    }
  }
  return plan;
}

std::optional<uint64_t> ChooseBase(const std::vector<Mapping>& maps, uint64_t near, uint64_t span) {
  std::vector<Mapping> sorted = maps;
  std::sort(sorted.begin(), sorted.end(), [](const Mapping& a, const Mapping& b) { return a.start < b.start; });
  std::optional<uint64_t> best;
  uint64_t best_distance = UINT64_MAX;
  auto consider = [&](uint64_t base) {
    const int64_t d1 = static_cast<int64_t>(base - near), d2 = static_cast<int64_t>(base + span - near);
    if (std::max(std::llabs(d1), std::llabs(d2)) >= kReach) return;
    const uint64_t distance = static_cast<uint64_t>(std::llabs(d1));
    if (distance < best_distance) {
      best = base;
      best_distance = distance;
    }
  };
  uint64_t gap_start = kLowest;
  bool after_heap = false;
  for (size_t i = 0; i <= sorted.size(); ++i) {
    const uint64_t gap_end = i < sorted.size() ? sorted[i].start : kHighest;
    // Leave a page free on each side; never sit right above [heap], where brk grows.
    if (gap_end > gap_start + span + 2 * kPage && !after_heap) {
      consider(PageDown(gap_end - kPage - span));  // the top of the gap: closest to what lies above
      consider(gap_start + kPage);                 // the bottom: closest to what lies below
    }
    if (i < sorted.size()) {
      gap_start = std::max(gap_start, sorted[i].end);
      after_heap = sorted[i].path == "[heap]";
    }
  }
  return best;
}

std::optional<uint64_t> ChooseAnyBase(const std::vector<Mapping>& maps, uint64_t span) {
  std::vector<Mapping> sorted = maps;
  std::sort(sorted.begin(), sorted.end(), [](const Mapping& a, const Mapping& b) { return a.start < b.start; });
  // The highest free gap below the lowest shared library region is what mmap itself would pick.
  uint64_t gap_end = kHighest;
  for (size_t i = sorted.size(); i-- > 0;) {
    if (sorted[i].end > kHighest) continue;  // [vsyscall]
    if (gap_end >= sorted[i].end + span + 2 * kPage) return PageDown(gap_end - kPage - span);
    gap_end = sorted[i].start;
  }
  return gap_end >= kLowest + span + 2 * kPage ? std::optional<uint64_t>(PageDown(gap_end - kPage - span)) : std::nullopt;
}

}  // namespace hotpatch
