// ObjectFile: a relocatable object (.o) as libelf reads it: every section with its bytes, the
// symbol table and the relocations, so that two builds of one translation unit can be compared
// function by function and a patch can be linked from one of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hotpatch {

struct ObjectSection {
  std::string name;
  uint32_t type;   // SHT_*
  uint64_t flags;  // SHF_*
  uint64_t size;
  uint64_t align;
  uint64_t entsize;
  uint32_t link;
  uint32_t info;
  std::vector<uint8_t> bytes;  // empty for SHT_NOBITS
};

struct ObjectSymbol {
  std::string name;
  uint64_t value;
  uint64_t size;
  uint8_t type;        // STT_*
  uint8_t bind;        // STB_*
  uint8_t visibility;  // STV_*
  uint16_t shndx;      // section index, SHN_UNDEF, SHN_ABS, SHN_COMMON
};

struct ObjectRelocation {
  uint32_t section;  // index of the section the relocation applies to
  uint64_t offset;
  uint32_t type;     // R_X86_64_*
  uint32_t symbol;   // index into the symbol table
  int64_t addend;
};

struct ObjectFile {
  uint16_t machine;
  std::vector<ObjectSection> sections;  // by section index; index 0 is the null section
  std::vector<ObjectSymbol> symbols;    // by symbol index; index 0 is the null symbol
  std::vector<ObjectRelocation> relocations;
};

// Reads an x86-64 ELF64 relocatable object. Throws EngineError (EELF_OPEN, EBAD_ELF).
ObjectFile ReadObjectFile(const std::string& path);

}  // namespace hotpatch
