#include "proc_maps.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine_error.h"
#include "ptrace/errno_codes.h"

namespace hotpatch {

std::vector<Mapping> ReadProcMaps(pid_t pid) {
  const std::string file = "/proc/" + std::to_string(pid) + "/maps";
  std::ifstream in(file);
  if (!in) {
    const int err = errno;
    if (err == ENOENT || err == ESRCH) throw EngineError("ENOPROCESS", "cannot read " + file + ": no such process");
    ThrowForErrno(err, pid, "reading " + file);
  }
  std::vector<Mapping> maps;
  std::string line;
  while (std::getline(in, line)) {
    // start-end perms offset dev inode [path]; the path may contain spaces, so take the rest.
    std::istringstream fields(line);
    std::string range;
    Mapping m{};
    fields >> range >> m.perms >> std::hex >> m.offset >> m.dev >> std::dec >> m.inode;
    const auto dash = range.find('-');
    if (dash == std::string::npos) continue;
    m.start = std::stoull(range.substr(0, dash), nullptr, 16);
    m.end = std::stoull(range.substr(dash + 1), nullptr, 16);
    std::string rest;
    std::getline(fields, rest);
    const auto first = rest.find_first_not_of(' ');
    if (first != std::string::npos) m.path = rest.substr(first);
    maps.push_back(std::move(m));
  }
  return maps;
}

}  // namespace hotpatch
