// TargetImage: the ELF objects a live process has mapped (its executable and shared libraries),
// each with its load bias, so that a symbol name can be turned into an address in the target.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../elf_file.h"
#include "../proc_maps.h"
#include "object_cache.h"

namespace hotpatch {

struct ResolvedSymbol {
  uint64_t address;    // in the target
  uint64_t size;
  uint8_t type;        // STT_FUNC, STT_OBJECT, ...
  std::string object;  // path of the object that defines it (as the target sees it)
};

struct LoadedObject {
  std::string path;       // as the target sees it
  std::string host_path;  // the same file as we can open it (through /proc/PID/root)
  uint64_t bias;          // add to a symbol value to get its address in the target
  bool is_executable;     // the main program
  std::shared_ptr<const ElfInfo> elf;
};

class TargetImage {
 public:
  // Reads the maps and every mapped ELF object (through `cache`). `debug_dirs` are searched for
  // separate debug info by build-id (default /usr/lib/debug when empty).
  TargetImage(pid_t pid, std::vector<std::string> debug_dirs, ObjectCache& cache);

  // Resolves a defined symbol: the executable's .symtab (statics included) and .dynsym, then the
  // libraries' exported symbols, then the executable's separate debug info. A static name defined
  // in several source files must be qualified as "file.c:name". Throws ENOSYMBOL,
  // EAMBIGUOUS_SYMBOL.
  ResolvedSymbol Resolve(const std::string& name) const;

  pid_t pid() const { return pid_; }
  const std::vector<Mapping>& maps() const { return maps_; }
  const std::vector<LoadedObject>& objects() const { return objects_; }

 private:
  std::optional<ResolvedSymbol> FromObject(const LoadedObject& obj, const ElfInfo& symbols, const std::string& file,
                                           const std::string& name, bool locals) const;
  const ElfInfo* DebugInfo() const;

  pid_t pid_;
  std::vector<std::string> debug_dirs_;
  std::vector<Mapping> maps_;
  std::vector<LoadedObject> objects_;
  ObjectCache& cache_;
  mutable std::optional<std::shared_ptr<const ElfInfo>> debug_;  // looked up once, on first need
};

}  // namespace hotpatch
