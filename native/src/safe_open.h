// Opening files that a target may have put in our way: never blocking (a FIFO or a device under a
// mapped path opens at once and is refused), regular files only, and a path inside a target's root
// resolved inside that root (openat2 RESOLVE_IN_ROOT), never through the host's.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "fd.h"

namespace hotpatch {

// Opens `path` read-only (O_NONBLOCK, O_NOCTTY) and checks by fstat that it is a regular file.
// Throws EELF_OPEN naming the path and why.
UniqueFd OpenRegularFile(const std::string& path);

// What an open inside a target's root found.
struct RootOpen {
  UniqueFd fd;       // valid only for a regular file
  int err;           // errno of the failed open (0 when something was there)
  bool not_regular;  // something is there, but no regular file (FIFO, device, directory, ...)
};

// The target's root directory (O_PATH of /proc/PID/root): the one place we enter that link.
UniqueFd OpenTargetRoot(pid_t pid);

// Opens `path` as a process with root `root_fd` sees it: absolute symlinks and ".." stay inside
// that root, magic links (/proc/self/...) are refused, and only a regular file is kept.
RootOpen OpenRegularInRoot(int root_fd, const std::string& path);

// stat of `path` resolved the same way; false (errno set) when nothing is there.
bool StatInRoot(int root_fd, const std::string& path, struct stat& st);

}  // namespace hotpatch
