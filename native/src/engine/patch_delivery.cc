#include "patch_delivery.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../engine_error.h"
#include "../fd.h"
#include "../ptrace/stopped_process.h"
#include "../safe_open.h"

namespace hotpatch {
namespace {

constexpr size_t kMaxPatchBytes = size_t{256} << 20;
constexpr int kSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

[[noreturn]] void Fail(const std::string& what, int err) {
  throw EngineError("EINJECT", "handing the patch to the target: " + what + ": " + std::strerror(err));
}

// Our duplicate of the target's fd, checked to be the empty memfd the target just created (a
// sibling sharing its fd table could have put another file under that number meanwhile).
UniqueFd TakeEmptyMemfd(pid_t pid, long target_fd) {
  const UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) Fail("pidfd_open", errno);
  UniqueFd ours(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), target_fd, 0)));
  if (!ours.valid()) Fail("pidfd_getfd", errno);
  struct stat st {};
  if (::fstat(ours.get(), &st) != 0) Fail("fstat", errno);
  if (!S_ISREG(st.st_mode) || st.st_size != 0 || st.st_nlink != 0 || ::fcntl(ours.get(), F_GET_SEALS) != 0) {
    throw EngineError("EINJECT", "handing the patch to the target: its fd " + std::to_string(target_fd) +
                                     " is not the empty memfd just created (another process shares its fd table?)");
  }
  return ours;
}

void Fill(int fd, const std::vector<uint8_t>& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) Fail("writing the patch into the target's memfd", n < 0 ? errno : ENOSPC);
    done += static_cast<size_t>(n);
  }
  // Sealed: nobody, the target included, can change the patch's file under its mappings.
  if (::fcntl(fd, F_ADD_SEALS, kSeals) != 0) Fail("sealing the memfd", errno);
}

}  // namespace

std::vector<uint8_t> ReadPatchBytes(const std::string& so_path) {
  const UniqueFd fd = OpenRegularFile(so_path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw EngineError("EELF_OPEN", "cannot stat " + so_path + ": " + std::strerror(errno));
  if (st.st_size <= 0 || static_cast<uint64_t>(st.st_size) > kMaxPatchBytes) {
    throw EngineError("EBAD_ARGUMENT", "the patch " + so_path + " is " + std::to_string(st.st_size) +
                                           " bytes; a patch is 1 byte to " + std::to_string(kMaxPatchBytes >> 20) + " MiB");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::pread(fd.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw EngineError("EELF_OPEN", "cannot read the patch " + so_path + (n < 0 ? ": " + std::string(std::strerror(errno)) : ": it shrank"));
    done += static_cast<size_t>(n);
  }
  return bytes;
}

std::string PatchMemfdPath(const std::string& id) { return "/memfd:hotpatch-patch-" + id; }

TargetPatchFd::TargetPatchFd(StoppedProcess& stopped, uint64_t stub, const std::vector<uint8_t>& bytes,
                             const std::string& id, const std::vector<long>& avoid_fds)
    : stopped_(stopped), stub_(stub), fd_(-1) {
  const std::string name = PatchMemfdPath(id).substr(std::strlen("/memfd:"));
  const uint64_t name_addr = stopped.Scratch(name.size() + 1);
  stopped.memory().Write(name_addr, name.c_str(), name.size() + 1);
  const long fd = stopped.InjectSyscall(stub, SYS_memfd_create, static_cast<long>(name_addr), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    throw EngineError("EINJECT", "the target could not create a memfd for the patch: " + std::string(std::strerror(static_cast<int>(-fd))));
  }
  fd_ = fd;
  try {
    // ld.so knows a loaded object by its name too: a dlopen name still in use must not come back.
    while (std::find(avoid_fds.begin(), avoid_fds.end(), fd_) != avoid_fds.end()) {
      const long moved = stopped.InjectSyscall(stub, SYS_fcntl, fd_, F_DUPFD_CLOEXEC, fd_ + 1);
      if (moved < 0) Fail("moving the memfd to another number", static_cast<int>(-moved));
      stopped.InjectSyscall(stub, SYS_close, fd_);
      fd_ = moved;
    }
    Fill(TakeEmptyMemfd(stopped.pid(), fd_).get(), bytes);
  } catch (...) {
    Close();
    throw;
  }
}

void TargetPatchFd::Close() noexcept {
  if (fd_ < 0) return;
  try {
    stopped_.InjectSyscall(stub_, SYS_close, fd_);
  } catch (...) {
    // The target is gone or refuses: the fd (close-on-exec) is all that is left behind.
  }
  fd_ = -1;
}

TargetPatchFd::~TargetPatchFd() { Close(); }

}  // namespace hotpatch
