#include "safe_open.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine_error.h"

namespace hotpatch {
namespace {

constexpr int kReadFlags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;

int OpenAt2(int dirfd, const std::string& path, uint64_t flags) {
  open_how how{};
  how.flags = flags;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
}

}  // namespace

UniqueFd OpenRegularFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), kReadFlags));
  if (!fd.valid()) throw EngineError("EELF_OPEN", "cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw EngineError("EELF_OPEN", "cannot stat " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw EngineError("EELF_OPEN", path + " is not a regular file");
  return fd;
}

UniqueFd OpenTargetRoot(pid_t pid) {
  const std::string link = "/proc/" + std::to_string(pid) + "/root";
  return UniqueFd(::open(link.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
}

RootOpen OpenRegularInRoot(int root_fd, const std::string& path) {
  RootOpen out{UniqueFd(OpenAt2(root_fd, path, kReadFlags)), 0, false};
  if (!out.fd.valid()) {
    out.err = errno;
    return out;
  }
  struct stat st {};
  if (::fstat(out.fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    out.fd.reset();
    out.not_regular = true;
  }
  return out;
}

bool StatInRoot(int root_fd, const std::string& path, struct stat& st) {
  UniqueFd fd(OpenAt2(root_fd, path, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  return fd.valid() && ::fstat(fd.get(), &st) == 0;
}

}  // namespace hotpatch
