// TargetImage: the ELF objects a live process has mapped (its executable and shared libraries),
// each with its load bias, in the order its dynamic linker searches them, so that a symbol name
// can be turned into the address the target itself would use.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../elf_file.h"
#include "../proc_maps.h"
#include "../ptrace/target_memory.h"
#include "object_cache.h"

namespace hotpatch {

struct ResolvedSymbol {
  uint64_t address;    // in the target
  uint64_t size;
  uint8_t type;        // STT_FUNC, STT_OBJECT, ...
  std::string object;  // path of the object that defines it (as the target sees it)
};

// A thread-local variable of the target: where it is inside its object's TLS block, and that block.
struct ResolvedTls {
  uint64_t offset;  // st_value: offset inside the block (what DTPOFF64 takes)
  uint64_t modid;   // the block's module id in every thread's dtv (what DTPMOD64 takes)
  std::optional<int64_t> static_offset;  // the block's offset below the thread pointer, when in static TLS
  std::string object;
};

// How the file now at an object's path relates to what the process mapped.
enum class OnDisk {
  kSame,      // the same file (or, when that cannot be checked, the same build by build-id)
  kReplaced,  // another file is there now (a package upgrade renamed a new one over it)
  kDeleted,   // nothing is there any more
};

struct LoadedObject {
  std::string path;    // as the target sees it, without the kernel's " (deleted)"
  std::string source;  // the file that was read: /proc/PID/exe, /proc/PID/map_files/..., or the path through /proc/PID/root
  OnDisk disk;
  uint64_t start, end;                                 // extent of its mappings
  std::vector<std::pair<uint64_t, uint64_t>> code;     // its executable mappings
  uint64_t bias;                                       // add to a symbol value to get its address in the target
  bool is_executable;                                  // the main program
  std::optional<size_t> link_map_index;                // its place in ld.so's list, if listed there
  uint64_t link_map = 0;                               // its struct link_map in the target, if listed
  std::shared_ptr<const ElfInfo> elf;                  // nullptr when the mapped file could not be read
  std::string unreadable;                              // why, when it could not
};

// Where the libraries' order comes from.
struct SearchOrder {
  bool link_map;       // ld.so's list; otherwise /proc/PID/maps (address) order
  std::string reason;  // why ld.so's list was not used
};

class TargetImage {
 public:
  // Reads the maps, every mapped ELF object as mapped (never a newer file at the same path) through
  // `cache`, and the dynamic linker's list of objects. `debug_dirs` are searched for separate
  // debug info by build-id (default /usr/lib/debug when empty).
  TargetImage(pid_t pid, std::vector<std::string> debug_dirs, ObjectCache& cache);
  // The same from maps the caller has just read.
  TargetImage(pid_t pid, std::vector<std::string> debug_dirs, ObjectCache& cache, std::vector<Mapping> maps);

  // Resolves a defined symbol: the executable's .symtab (statics included) and .dynsym, then its
  // separate debug info (standing in for a stripped .symtab), then the libraries' exported symbols
  // in the dynamic linker's order (the first definition wins, as in the target). A static name defined in several
  // source files must be qualified as "file.c:name". An IFUNC resolves to the implementation the
  // target's ld.so chose. Throws ENOSYMBOL, EAMBIGUOUS_SYMBOL, EUNSUPPORTED_PATCH (an IFUNC whose
  // choice cannot be known), EELF_OPEN (a library searched before the name was found could not
  // be read).
  ResolvedSymbol Resolve(const std::string& name) const;

  // Resolves a thread-local variable (STT_TLS) in the same order, with the TLS block ld.so gave its
  // object. Throws ENOSYMBOL, and EUNSUPPORTED_PATCH when the block cannot be read.
  ResolvedTls ResolveTls(const std::string& name) const;

  pid_t pid() const { return pid_; }
  const std::vector<Mapping>& maps() const { return maps_; }
  // The executable first, then the libraries in search order, then mapped objects ld.so does not
  // list (in maps order).
  const std::vector<LoadedObject>& objects() const { return objects_; }
  const SearchOrder& search_order() const { return order_; }

 private:
  std::optional<ResolvedSymbol> FromObject(const LoadedObject& obj, const ElfInfo& symbols, const std::string& file,
                                           const std::string& name, bool locals) const;
  uint64_t ResolveIfunc(const LoadedObject& def, const ElfSymbol& sym) const;
  uint64_t IfuncFromOwnCopy(const LoadedObject& def, const ElfSymbol& sym) const;
  std::optional<uint64_t> Word(uint64_t addr) const;
  void OrderByLinkMap();
  const ElfInfo* DebugInfo() const;

  pid_t pid_;
  std::vector<std::string> debug_dirs_;
  std::vector<Mapping> maps_;
  TargetMemory memory_;
  std::vector<LoadedObject> objects_;
  SearchOrder order_;
  ObjectCache& cache_;
  mutable std::optional<std::shared_ptr<const ElfInfo>> debug_;  // looked up once, on first need
};

}  // namespace hotpatch
