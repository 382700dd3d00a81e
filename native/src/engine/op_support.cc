// The helpers every patch operation uses.
#include "op_support.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "../ptrace/errno_codes.h"

namespace hotpatch {

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string PermsOf(int prot) {
  return {(prot & PROT_READ) ? 'r' : '-', (prot & PROT_WRITE) ? 'w' : '-', (prot & PROT_EXEC) ? 'x' : '-', 'p'};
}

std::string Str(const char* field, size_t cap) { return std::string(field, strnlen(field, cap)); }

void CopyField(char* dst, size_t cap, const std::string& value, const char* what) {
  if (value.size() >= cap) {
    throw EngineError("EBAD_ARGUMENT", std::string(what) + " is longer than " + std::to_string(cap - 1) + " bytes: " + value);
  }
  std::memset(dst, 0, cap);
  std::memcpy(dst, value.data(), value.size());
}

DescPatch* FindPatch(Descriptor& desc, const std::string& id) {
  for (auto& p : desc.patches) {
    if (Str(p.id, sizeof p.id) == id) return &p;
  }
  return nullptr;
}

DescPatch& RequirePatch(Descriptor& desc, const std::string& id, pid_t pid) {
  DescPatch* p = FindPatch(desc, id);
  if (p == nullptr) throw EngineError("ENOPATCH", "process " + std::to_string(pid) + " has no patch '" + id + "'");
  return *p;
}

bool Cancelled(const OpOptions& opts) {
  return opts.cancelled != nullptr && opts.cancelled->load(std::memory_order_relaxed) != 0;
}

void Sleep(std::chrono::microseconds d) {
  timespec ts{static_cast<time_t>(d.count() / 1'000'000), static_cast<long>(d.count() % 1'000'000) * 1000};
  nanosleep(&ts, nullptr);
}

// A target in another mount namespace (a container) does not see our file system: give it a copy
// inside its own root.
std::string TargetVisiblePath(pid_t pid, const std::string& so_path, const std::string& id) {
  struct stat ours {}, theirs {};
  if (::stat(so_path.c_str(), &ours) != 0) {
    throw EngineError("EBAD_ARGUMENT", "cannot read the patch file " + so_path + ": " + std::strerror(errno));
  }
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  if (::stat((root + so_path).c_str(), &theirs) == 0 && ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino) {
    return so_path;
  }
  const std::string inside = "/tmp/hotpatch-" + id + ".so";
  // Copied under a name of its own, then renamed over the old copy: a process that maps an earlier
  // copy keeps that file, instead of seeing it rewritten under its running code.
  const std::string staging = root + inside + "." + std::to_string(::getpid()) + "." + std::to_string(pid) + ".tmp";
  std::error_code ec;
  std::filesystem::copy_file(so_path, staging, std::filesystem::copy_options::overwrite_existing, ec);
  if (!ec) std::filesystem::rename(staging, root + inside, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(staging, ignored);
    // A process that just died loses its /proc/PID/root: that is no namespace problem.
    ThrowIfGone(pid, "loading the patch");
    throw EngineError("EMOUNT_NS", "process " + std::to_string(pid) + " is in another mount namespace and the patch " +
                                       "could not be copied to " + inside + " inside it: " + ec.message());
  }
  return inside;
}

std::optional<Conflict> PrepareLoaderCall(StoppedProcess& stopped, std::vector<Mapping>& maps, const DlopenApi& api) {
  std::optional<Conflict> first;
  for (const ThreadState& t : stopped.threads()) {
    auto conflict = FindConflict(stopped, maps, api.busy, t.tid);
    if (!conflict) {
      stopped.UseForInjection(t.tid);
      stopped.ReleaseOthers();
      return std::nullopt;
    }
    if (!first) first = conflict;
  }
  return first;
}

}  // namespace hotpatch
