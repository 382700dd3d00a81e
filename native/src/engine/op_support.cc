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
