#include "target_memory.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "../engine_error.h"
#include "errno_codes.h"

namespace hotpatch {
namespace {

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// /proc/PID/mem answers 0 (not an error) once the address space has no users: the process is past
// exit_mm() but may not show as a zombie yet, so its status cannot tell us; an unmapped address
// is EIO instead.
[[noreturn]] void ThrowAddressSpaceGone(pid_t pid, const char* during) {
  throw EngineError("ETARGET_EXITED", "process " + std::to_string(pid) + " exited during " + during +
                                          " (its address space is gone)");
}

}  // namespace

TargetMemory::TargetMemory(pid_t pid) : pid_(pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/mem";
  fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd_.valid()) ThrowForErrno(errno, pid, "open " + path);
}

size_t TargetMemory::ReadSome(uint64_t addr, uint8_t* out, size_t len) const {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd_.get(), out + done, len - done, static_cast<off_t>(addr + done));
    if (n == 0) ThrowAddressSpaceGone(pid_, "reading its memory");
    if (n < 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

std::vector<uint8_t> TargetMemory::Read(uint64_t addr, size_t len) const {
  std::vector<uint8_t> out(len);
  if (ReadSome(addr, out.data(), len) != len) {
    ThrowIfGone(pid_, "reading its memory");
    throw EngineError("EMEMORY", "cannot read " + std::to_string(len) + " bytes at " + Hex(addr) + " in process " +
                                     std::to_string(pid_) + ": " + std::strerror(errno));
  }
  return out;
}

void TargetMemory::Write(uint64_t addr, const void* bytes, size_t len) const {
  const auto* p = static_cast<const uint8_t*>(bytes);
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pwrite(fd_.get(), p + done, len - done, static_cast<off_t>(addr + done));
    if (n == 0) ThrowAddressSpaceGone(pid_, "writing its memory");
    if (n < 0) {
      ThrowIfGone(pid_, "writing its memory");
      throw EngineError("EMEMORY", "cannot write " + std::to_string(len) + " bytes at " + Hex(addr) +
                                       " in process " + std::to_string(pid_) + ": " + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
}

void TargetMemory::Write(uint64_t addr, const std::vector<uint8_t>& bytes) const {
  Write(addr, bytes.data(), bytes.size());
}

}  // namespace hotpatch
