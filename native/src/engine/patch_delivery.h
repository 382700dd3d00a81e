// Hands a patch file to a stopped target without resolving any path inside its root: the target
// creates a memfd (injected memfd_create), we take a duplicate of it (pidfd_getfd), check that it
// is the empty memfd just made, fill it from the host's copy and seal it; the target then maps it
// (mmap loader) or dlopens /proc/self/fd/N (dlopen loader). A container whose /tmp is a symlink
// to a host file reaches nothing: no host-side open, create or rename ever names its root.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hotpatch {

class StoppedProcess;

// The bytes of a patch file on the host (a regular file, opened without blocking).
std::vector<uint8_t> ReadPatchBytes(const std::string& so_path);

// The name the target's maps show for a patch's memfd.
std::string PatchMemfdPath(const std::string& id);

// A sealed memfd holding the patch, open in the target for as long as this object lives (the
// destructor closes it there; a mapping or dlopen made from it stays).
class TargetPatchFd {
 public:
  // `avoid_fds`: numbers the target's fd must not have (dlopen names of patches still loaded).
  TargetPatchFd(StoppedProcess& stopped, uint64_t stub, const std::vector<uint8_t>& bytes, const std::string& id,
                const std::vector<long>& avoid_fds = {});
  ~TargetPatchFd();
  TargetPatchFd(const TargetPatchFd&) = delete;
  TargetPatchFd& operator=(const TargetPatchFd&) = delete;

  long fd() const { return fd_; }
  // The path the target's own loader opens it by.
  std::string DlopenPath() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  void Close() noexcept;

  StoppedProcess& stopped_;
  uint64_t stub_;
  long fd_;
};

}  // namespace hotpatch
