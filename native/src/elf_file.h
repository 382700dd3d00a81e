// ElfFile: what hotpatch needs to know about one ELF file, read with elfutils' libelf.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hotpatch {

struct ElfProgramHeader {
  uint32_t type;
  uint32_t flags;
  uint64_t offset;
  uint64_t vaddr;
  uint64_t filesz;
  uint64_t memsz;
  uint64_t align;
};

struct ElfSection {
  std::string name;
  uint32_t type;
  uint64_t flags;
  uint64_t addr;
  uint64_t offset;
  uint64_t size;
};

enum class SymbolTable { kSymtab, kDynsym };

struct ElfSymbol {
  std::string name;
  uint64_t value;
  uint64_t size;
  uint8_t type;   // STT_*
  uint8_t bind;   // STB_*
  uint16_t shndx; // SHN_UNDEF for undefined symbols
  SymbolTable table;
  // For local symbols of .symtab: the source file named by the preceding STT_FILE symbol, so
  // that two static functions of the same name can be told apart.
  std::string file;
  // .dynsym only: a non-default symbol version (name@VER, not name@@VER); never bind to it.
  bool hidden_version = false;
};

// A dynamic relocation that makes ld.so fill a GOT slot with a function's final address: how a
// live process's choice of IFUNC implementation can be read back from its memory.
struct ElfGotSlot {
  uint64_t offset;     // r_offset: where the slot is (add the load bias)
  uint32_t type;       // R_X86_64_IRELATIVE, R_X86_64_GLOB_DAT or R_X86_64_JUMP_SLOT
  int64_t addend;      // IRELATIVE: the resolver's address (before the bias)
  std::string symbol;  // GLOB_DAT, JUMP_SLOT: the name bound there
};

struct ElfInfo {
  uint16_t type;     // ET_EXEC, ET_DYN, ...
  uint16_t machine;  // EM_X86_64, ...
  uint8_t elf_class; // ELFCLASS64, ...
  uint64_t entry;
  std::optional<std::string> build_id;  // lowercase hex
  std::optional<std::string> debug_link;
  std::vector<ElfProgramHeader> program_headers;
  std::vector<ElfSection> sections;
  std::vector<ElfSymbol> symbols;
  std::vector<ElfGotSlot> got_slots;
};

// Reads the whole description of an ELF file. Throws EngineError (EELF_OPEN, EBAD_ELF).
ElfInfo ReadElfFile(const std::string& path);
// The same, from an open file (`name` is for messages). Throws EBAD_ELF.
ElfInfo ReadElfFd(int fd, const std::string& name);
// Only the build-id (as ReadElfFile finds it), reading the notes and nothing else: a big program's
// symbol tables take seconds to read. Throws EngineError (EELF_OPEN, EBAD_ELF).
std::optional<std::string> ReadBuildIdFile(const std::string& path);

}  // namespace hotpatch
