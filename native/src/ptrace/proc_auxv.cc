#include "proc_auxv.h"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "../engine_error.h"
#include "../fd.h"
#include "errno_codes.h"

namespace hotpatch {

uint64_t ReadEntryPoint(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/auxv";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) ThrowForErrno(errno, pid, "reading " + path);
  Elf64_auxv_t entry;
  while (::read(fd.get(), &entry, sizeof entry) == static_cast<ssize_t>(sizeof entry)) {
    if (entry.a_type == AT_ENTRY) return entry.a_un.a_val;
    if (entry.a_type == AT_NULL) break;
  }
  throw EngineError("EINTERNAL", "process " + std::to_string(pid) + " has no AT_ENTRY in its auxiliary vector");
}

}  // namespace hotpatch
