#include "object_file.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "../engine_error.h"
#include "../fd.h"

namespace hotpatch {
namespace {

struct ElfDeleter {
  void operator()(Elf* elf) const { elf_end(elf); }
};

[[noreturn]] void Bad(const std::string& path, const std::string& what) { throw EngineError("EBAD_ELF", path + ": " + what); }

void ReadSymbols(Elf* elf, Elf_Scn* scn, const GElf_Shdr& sh, const std::string& path, ObjectFile& out) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (data == nullptr || sh.sh_entsize == 0) Bad(path, "an empty symbol table");
  const size_t n = sh.sh_size / sh.sh_entsize;
  out.symbols.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    GElf_Sym sym;
    if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) Bad(path, elf_errmsg(-1));
    const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
    out.symbols.push_back({name ? name : "", sym.st_value, sym.st_size, static_cast<uint8_t>(GELF_ST_TYPE(sym.st_info)),
                           static_cast<uint8_t>(GELF_ST_BIND(sym.st_info)),
                           static_cast<uint8_t>(GELF_ST_VISIBILITY(sym.st_other)), sym.st_shndx});
  }
}

void ReadRelocations(Elf_Scn* scn, const GElf_Shdr& sh, const std::string& path, ObjectFile& out) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  const size_t n = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
  for (size_t i = 0; data && i < n; ++i) {
    GElf_Rela r;
    if (gelf_getrela(data, static_cast<int>(i), &r) == nullptr) Bad(path, elf_errmsg(-1));
    out.relocations.push_back({sh.sh_info, r.r_offset, static_cast<uint32_t>(GELF_R_TYPE(r.r_info)),
                               static_cast<uint32_t>(GELF_R_SYM(r.r_info)), r.r_addend});
  }
}

}  // namespace

ObjectFile ReadObjectFile(const std::string& path) {
  elf_version(EV_CURRENT);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw EngineError("EELF_OPEN", "cannot open " + path + ": " + std::strerror(errno));
  std::unique_ptr<Elf, ElfDeleter> elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) Bad(path, "not an ELF file");
  GElf_Ehdr eh;
  if (gelf_getehdr(elf.get(), &eh) == nullptr) Bad(path, elf_errmsg(-1));
  if (eh.e_type != ET_REL || gelf_getclass(elf.get()) != ELFCLASS64 || eh.e_machine != EM_X86_64) {
    Bad(path, "not an x86-64 ELF64 relocatable object");
  }
  size_t file_size = 0, shnum = 0, shstrndx = 0;
  elf_rawfile(elf.get(), &file_size);
  if (elf_getshdrnum(elf.get(), &shnum) != 0 || elf_getshdrstrndx(elf.get(), &shstrndx) != 0) Bad(path, elf_errmsg(-1));

  ObjectFile out{eh.e_machine, {}, {}, {}};
  out.sections.resize(shnum);
  for (size_t i = 1; i < shnum; ++i) {
    Elf_Scn* scn = elf_getscn(elf.get(), i);
    GElf_Shdr sh;
    if (scn == nullptr || gelf_getshdr(scn, &sh) == nullptr) Bad(path, elf_errmsg(-1));
    if (sh.sh_type != SHT_NOBITS && sh.sh_offset + sh.sh_size > file_size) Bad(path, "a section runs past the end of the file");
    const char* name = elf_strptr(elf.get(), shstrndx, sh.sh_name);
    ObjectSection& s = out.sections[i];
    s = {name ? name : "", sh.sh_type, sh.sh_flags, sh.sh_size, sh.sh_addralign, sh.sh_entsize, sh.sh_link, sh.sh_info, {}};
    if (sh.sh_type != SHT_NOBITS && sh.sh_size > 0) {
      Elf_Data* raw = elf_rawdata(scn, nullptr);
      if (raw == nullptr || raw->d_size != sh.sh_size) Bad(path, "cannot read section " + s.name);
      const auto* b = static_cast<const uint8_t*>(raw->d_buf);
      s.bytes.assign(b, b + raw->d_size);
    }
    if (sh.sh_type == SHT_SYMTAB) ReadSymbols(elf.get(), scn, sh, path, out);
    if (sh.sh_type == SHT_RELA) ReadRelocations(scn, sh, path, out);
    if (sh.sh_type == SHT_REL) Bad(path, "REL relocations (x86-64 objects use RELA)");
  }
  return out;
}

}  // namespace hotpatch
