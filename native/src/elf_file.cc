#include "elf_file.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "engine_error.h"
#include "fd.h"
#include "safe_open.h"

namespace hotpatch {
namespace {

struct ElfDeleter {
  void operator()(Elf* elf) const { elf_end(elf); }
};
using ElfHandle = std::unique_ptr<Elf, ElfDeleter>;

[[noreturn]] void ThrowBadElf(const std::string& path, const std::string& what) {
  throw EngineError("EBAD_ELF", path + ": " + what);
}

std::string Hex(const unsigned char* bytes, size_t len) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (size_t i = 0; i < len; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xf]);
  }
  return out;
}

// Looks for NT_GNU_BUILD_ID in one note-bearing data block.
std::optional<std::string> FindBuildId(Elf_Data* data) {
  GElf_Nhdr nhdr;
  size_t offset = 0, name_off = 0, desc_off = 0;
  while ((offset = gelf_getnote(data, offset, &nhdr, &name_off, &desc_off)) > 0) {
    const char* name = static_cast<const char*>(data->d_buf) + name_off;
    if (nhdr.n_type == NT_GNU_BUILD_ID && nhdr.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
      return Hex(static_cast<const unsigned char*>(data->d_buf) + desc_off, nhdr.n_descsz);
    }
  }
  return std::nullopt;
}

void ReadSymbols(Elf* elf, Elf_Scn* scn, const GElf_Shdr& shdr, SymbolTable table, Elf_Data* versym,
                 std::vector<ElfSymbol>& out) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (data == nullptr || shdr.sh_entsize == 0) return;
  const size_t count = shdr.sh_size / shdr.sh_entsize;
  std::string current_file;
  for (size_t i = 1; i < count; ++i) {  // index 0 is the reserved null symbol
    GElf_Sym sym;
    if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) continue;
    const char* name = elf_strptr(elf, shdr.sh_link, sym.st_name);
    const uint8_t type = GELF_ST_TYPE(sym.st_info);
    const uint8_t bind = GELF_ST_BIND(sym.st_info);
    if (type == STT_FILE) {
      current_file = name ? name : "";
      continue;
    }
    if (name == nullptr || *name == '\0' || type == STT_SECTION) continue;
    ElfSymbol s{name, sym.st_value, sym.st_size, type, bind, sym.st_shndx, table, "", false};
    if (bind == STB_LOCAL) s.file = current_file;
    GElf_Versym vs;
    if (versym != nullptr && gelf_getversym(versym, static_cast<int>(i), &vs) != nullptr) {
      s.hidden_version = (vs & 0x8000) != 0;
    }
    out.push_back(std::move(s));
  }
}

// The dynamic relocations (allocated SHT_RELA: .rela.dyn, .rela.plt) that fill GOT slots with
// function addresses.
void ReadGotSlots(Elf* elf, Elf_Scn* scn, const GElf_Shdr& shdr, std::vector<ElfGotSlot>& out) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  Elf_Scn* symscn = elf_getscn(elf, shdr.sh_link);
  GElf_Shdr symsh;
  Elf_Data* syms = symscn != nullptr && gelf_getshdr(symscn, &symsh) != nullptr ? elf_getdata(symscn, nullptr) : nullptr;
  if (data == nullptr || shdr.sh_entsize == 0) return;
  const size_t count = shdr.sh_size / shdr.sh_entsize;
  for (size_t i = 0; i < count; ++i) {
    GElf_Rela r;
    if (gelf_getrela(data, static_cast<int>(i), &r) == nullptr) continue;
    const auto type = static_cast<uint32_t>(GELF_R_TYPE(r.r_info));
    if (type == R_X86_64_IRELATIVE) {
      out.push_back({r.r_offset, type, r.r_addend, ""});
    } else if ((type == R_X86_64_GLOB_DAT || type == R_X86_64_JUMP_SLOT) && syms != nullptr) {
      GElf_Sym sym;
      if (gelf_getsym(syms, static_cast<int>(GELF_R_SYM(r.r_info)), &sym) == nullptr) continue;
      const char* name = elf_strptr(elf, symsh.sh_link, sym.st_name);
      if (name != nullptr && *name != '\0') out.push_back({r.r_offset, type, r.r_addend, name});
    }
  }
}

}  // namespace

ElfInfo ReadElfFile(const std::string& path) {
  const UniqueFd fd = OpenRegularFile(path);
  return ReadElfFd(fd.get(), path);
}

ElfInfo ReadElfFd(int fd, const std::string& path) {
  if (elf_version(EV_CURRENT) == EV_NONE) throw EngineError("EBAD_ELF", "libelf is unusable");
  ElfHandle elf(elf_begin(fd, ELF_C_READ_MMAP, nullptr));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) ThrowBadElf(path, "not an ELF file");

  GElf_Ehdr ehdr;
  if (gelf_getehdr(elf.get(), &ehdr) == nullptr) ThrowBadElf(path, elf_errmsg(-1));
  // libelf reads lazily and tolerates tables that run past the end of the file; a truncated file
  // must be refused here rather than yield half a symbol table.
  size_t file_size = 0;
  if (elf_rawfile(elf.get(), &file_size) == nullptr) ThrowBadElf(path, elf_errmsg(-1));
  auto require_in_file = [&](uint64_t offset, uint64_t size, const char* what) {
    if (offset > file_size || size > file_size - offset) {
      ThrowBadElf(path, std::string(what) + " runs past the end of the file (truncated?)");
    }
  };
  require_in_file(ehdr.e_phoff, uint64_t{ehdr.e_phnum} * ehdr.e_phentsize, "program header table");
  require_in_file(ehdr.e_shoff, uint64_t{ehdr.e_shnum} * ehdr.e_shentsize, "section header table");
  ElfInfo info{};
  info.type = ehdr.e_type;
  info.machine = ehdr.e_machine;
  info.elf_class = static_cast<uint8_t>(gelf_getclass(elf.get()));
  info.entry = ehdr.e_entry;

  size_t phnum = 0;
  if (elf_getphdrnum(elf.get(), &phnum) != 0) ThrowBadElf(path, elf_errmsg(-1));
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf.get(), static_cast<int>(i), &ph) == nullptr) ThrowBadElf(path, elf_errmsg(-1));
    info.program_headers.push_back(
        {ph.p_type, ph.p_flags, ph.p_offset, ph.p_vaddr, ph.p_filesz, ph.p_memsz, ph.p_align});
  }

  Elf_Scn* dynsym = nullptr;
  Elf_Data* versym = nullptr;
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf.get(), &shstrndx) != 0) ThrowBadElf(path, elf_errmsg(-1));
  for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn; scn = elf_nextscn(elf.get(), scn)) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr) == nullptr) ThrowBadElf(path, elf_errmsg(-1));
    if (shdr.sh_type != SHT_NOBITS) require_in_file(shdr.sh_offset, shdr.sh_size, "a section");
    const char* name = elf_strptr(elf.get(), shstrndx, shdr.sh_name);
    info.sections.push_back({name ? name : "", shdr.sh_type, shdr.sh_flags, shdr.sh_addr,
                             shdr.sh_offset, shdr.sh_size});
    if (shdr.sh_type == SHT_SYMTAB) ReadSymbols(elf.get(), scn, shdr, SymbolTable::kSymtab, nullptr, info.symbols);
    if (shdr.sh_type == SHT_DYNSYM) dynsym = scn;
    if (shdr.sh_type == SHT_GNU_versym) versym = elf_getdata(scn, nullptr);
    if (shdr.sh_type == SHT_RELA && (shdr.sh_flags & SHF_ALLOC)) ReadGotSlots(elf.get(), scn, shdr, info.got_slots);
    if (shdr.sh_type == SHT_NOTE && !info.build_id) {
      if (Elf_Data* data = elf_getdata(scn, nullptr)) info.build_id = FindBuildId(data);
    }
    if (name && std::strcmp(name, ".gnu_debuglink") == 0) {
      Elf_Data* data = elf_getdata(scn, nullptr);
      if (data && data->d_size > 0) {
        const char* link = static_cast<const char*>(data->d_buf);
        info.debug_link = std::string(link, strnlen(link, data->d_size));
      }
    }
  }
  if (dynsym != nullptr) {
    GElf_Shdr shdr;
    if (gelf_getshdr(dynsym, &shdr) != nullptr) ReadSymbols(elf.get(), dynsym, shdr, SymbolTable::kDynsym, versym, info.symbols);
  }
  // A file without section headers (rare, but legal) still has its build-id in a PT_NOTE segment.
  if (!info.build_id) {
    for (const auto& ph : info.program_headers) {
      if (ph.type != PT_NOTE) continue;
      Elf_Data* data = elf_getdata_rawchunk(elf.get(), ph.offset, ph.filesz, ELF_T_NHDR);
      if (data && (info.build_id = FindBuildId(data))) break;
    }
  }
  return info;
}

std::optional<std::string> ReadBuildIdFile(const std::string& path) {
  const UniqueFd fd = OpenRegularFile(path);
  if (elf_version(EV_CURRENT) == EV_NONE) throw EngineError("EBAD_ELF", "libelf is unusable");
  ElfHandle elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) ThrowBadElf(path, "not an ELF file");
  size_t file_size = 0;
  if (elf_rawfile(elf.get(), &file_size) == nullptr) ThrowBadElf(path, elf_errmsg(-1));
  GElf_Ehdr ehdr;
  if (gelf_getehdr(elf.get(), &ehdr) == nullptr) ThrowBadElf(path, elf_errmsg(-1));
  const auto in_file = [&](uint64_t offset, uint64_t size) { return offset <= file_size && size <= file_size - offset; };
  if (!in_file(ehdr.e_phoff, uint64_t{ehdr.e_phnum} * ehdr.e_phentsize) ||
      !in_file(ehdr.e_shoff, uint64_t{ehdr.e_shnum} * ehdr.e_shentsize)) {
    ThrowBadElf(path, "a header table runs past the end of the file (truncated?)");
  }
  // The same order as ReadElfFd: note sections, then PT_NOTE segments.
  for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn; scn = elf_nextscn(elf.get(), scn)) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr) == nullptr) ThrowBadElf(path, elf_errmsg(-1));
    if (shdr.sh_type != SHT_NOTE) continue;
    if (!in_file(shdr.sh_offset, shdr.sh_size)) {
      ThrowBadElf(path, "a section runs past the end of the file (truncated?)");
    }
    if (Elf_Data* data = elf_getdata(scn, nullptr)) {
      if (auto id = FindBuildId(data)) return id;
    }
  }
  size_t phnum = 0;
  if (elf_getphdrnum(elf.get(), &phnum) != 0) ThrowBadElf(path, elf_errmsg(-1));
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf.get(), static_cast<int>(i), &ph) == nullptr) ThrowBadElf(path, elf_errmsg(-1));
    if (ph.p_type != PT_NOTE) continue;
    Elf_Data* data = elf_getdata_rawchunk(elf.get(), ph.p_offset, ph.p_filesz, ELF_T_NHDR);
    if (data == nullptr) continue;
    if (auto id = FindBuildId(data)) return id;
  }
  return std::nullopt;
}

}  // namespace hotpatch
