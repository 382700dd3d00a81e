#include "target_image.h"

#include <dlfcn.h>
#include <elf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <set>

#include "../engine_error.h"
#include "../ptrace/errno_codes.h"

namespace hotpatch {
namespace {

constexpr uint64_t kPage = 4096;

std::string ReadExeLink(pid_t pid) {
  char buf[PATH_MAX];
  const std::string link = "/proc/" + std::to_string(pid) + "/exe";
  const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n < 0) ThrowForErrno(errno, pid, "reading " + link);
  return std::string(buf, static_cast<size_t>(n));
}

bool IsFunctionOrObject(const ElfSymbol& s) {
  return s.type == STT_FUNC || s.type == STT_OBJECT || s.type == STT_GNU_IFUNC || s.type == STT_NOTYPE;
}

std::string Basename(const std::string& p) {
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// An IFUNC symbol's value is its resolver, which picks an implementation for this CPU. No code of
// the target may run, so ask our own process instead: when we have the same library (same
// build-id) loaded, the implementation sits at the same offset from the load base there.
ResolvedSymbol ResolveIfunc(const LoadedObject& obj, const std::string& name) {
  void* impl = dlsym(RTLD_DEFAULT, name.c_str());
  Dl_info info{};
  if (impl != nullptr && dladdr(impl, &info) != 0 && info.dli_fname != nullptr) {
    try {
      const ElfInfo ours = ReadElfFile(info.dli_fname);
      if (ours.build_id && ours.build_id == obj.elf->build_id) {
        const uint64_t offset = reinterpret_cast<uint64_t>(impl) - reinterpret_cast<uint64_t>(info.dli_fbase);
        uint64_t size = 0;
        for (const auto& s : ours.symbols) {
          if (s.value == offset && s.type == STT_FUNC && s.size > 0) size = s.size;
        }
        return {obj.bias + offset, size, STT_FUNC, obj.path};
      }
    } catch (const EngineError&) {
      // fall through to the refusal below
    }
  }
  throw EngineError("EUNSUPPORTED_PATCH", "'" + name + "' in " + obj.path +
                                              " is an IFUNC whose implementation hotpatch cannot determine without running "
                                              "code in the target (hotpatch does not load the same build of that library)");
}

}  // namespace

TargetImage::TargetImage(pid_t pid, std::vector<std::string> debug_dirs, ObjectCache& cache)
    : pid_(pid), debug_dirs_(std::move(debug_dirs)), maps_(ReadProcMaps(pid)), cache_(cache) {
  if (debug_dirs_.empty()) debug_dirs_.push_back("/usr/lib/debug");
  const std::string exe = ReadExeLink(pid);
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  std::set<std::string> seen;
  for (const Mapping& m : maps_) {
    // Objects are found by the mapping of their first page (file offset 0); "(deleted)" files and
    // pseudo-files cannot be read back.
    if (m.offset != 0 || m.path.empty() || m.path[0] != '/' || !seen.insert(m.path).second) continue;
    if (m.path.find(" (deleted)") != std::string::npos || m.path.rfind("/memfd:", 0) == 0) continue;
    std::shared_ptr<const ElfInfo> elf;
    try {
      elf = cache_.Elf(root + m.path);
    } catch (const EngineError&) {
      continue;  // unreadable: not something we could resolve symbols in anyway
    }
    if (!elf) continue;  // a mapped data file (locale archive, ...), not an ELF object
    uint64_t first_load = 0;
    bool has_load = false;
    for (const auto& ph : elf->program_headers) {
      if (ph.type == PT_LOAD) {
        first_load = ph.vaddr & ~(kPage - 1);
        has_load = true;
        break;
      }
    }
    if (!has_load) continue;
    const uint64_t bias = elf->type == ET_EXEC ? 0 : m.start - first_load;
    objects_.push_back({m.path, root + m.path, bias, m.path == exe, std::move(elf)});
  }
  // The executable first: it is searched first.
  std::stable_partition(objects_.begin(), objects_.end(), [](const LoadedObject& o) { return o.is_executable; });
  if (objects_.empty() || !objects_.front().is_executable) {
    throw EngineError("EBAD_ELF", "the executable of process " + std::to_string(pid) + " (" + exe + ") cannot be read");
  }
}

std::optional<ResolvedSymbol> TargetImage::FromObject(const LoadedObject& obj, const ElfInfo& symbols,
                                                      const std::string& file, const std::string& name,
                                                      bool locals) const {
  const ElfSymbol* global = nullptr;
  std::vector<const ElfSymbol*> statics;
  for (const ElfSymbol& s : symbols.symbols) {
    if (s.name != name || s.shndx == SHN_UNDEF || !IsFunctionOrObject(s) || s.hidden_version) continue;
    if (s.bind == STB_LOCAL) {
      if (!locals) continue;
      if (!file.empty() && s.file != file && Basename(s.file) != file) continue;
      if (std::none_of(statics.begin(), statics.end(), [&](const ElfSymbol* o) { return o->value == s.value; })) {
        statics.push_back(&s);
      }
    } else if (file.empty() && (global == nullptr || (global->bind == STB_WEAK && s.bind == STB_GLOBAL))) {
      global = &s;
    }
  }
  const ElfSymbol* pick = global;
  if (pick == nullptr && statics.size() > 1) {
    std::string where;
    for (const ElfSymbol* s : statics) where += " " + (s->file.empty() ? std::string("?") : s->file) + ":" + name;
    throw EngineError("EAMBIGUOUS_SYMBOL", "'" + name + "' names " + std::to_string(statics.size()) +
                                               " static symbols in " + obj.path + "; qualify it as one of" + where);
  }
  if (pick == nullptr && !statics.empty()) pick = statics.front();
  if (pick == nullptr) return std::nullopt;
  if (pick->type == STT_GNU_IFUNC) return ResolveIfunc(obj, name);
  return ResolvedSymbol{obj.bias + pick->value, pick->size, pick->type, obj.path};
}

const ElfInfo* TargetImage::DebugInfo() const {
  if (!debug_) {
    debug_ = std::shared_ptr<const ElfInfo>();
    const LoadedObject& exe = objects_.front();
    std::vector<std::string> candidates;
    const auto& id = exe.elf->build_id;
    for (const auto& dir : debug_dirs_) {
      if (id && id->size() > 2) candidates.push_back(dir + "/.build-id/" + id->substr(0, 2) + "/" + id->substr(2) + ".debug");
      if (exe.elf->debug_link) {
        const std::string exe_dir = std::filesystem::path(exe.path).parent_path().string();
        candidates.push_back(dir + exe_dir + "/" + *exe.elf->debug_link);
      }
    }
    for (const auto& c : candidates) {
      try {
        auto info = cache_.Elf(c);
        // Only the debug file of this very build describes this executable's addresses.
        if (info && info->build_id == id) {
          *debug_ = std::move(info);
          break;
        }
      } catch (const EngineError&) {
        // not there: try the next place
      }
    }
  }
  return debug_->get();
}

ResolvedSymbol TargetImage::Resolve(const std::string& qualified) const {
  std::string file, name = qualified;
  if (const auto colon = qualified.find(':'); colon != std::string::npos) {
    file = qualified.substr(0, colon);
    name = qualified.substr(colon + 1);
  }
  if (name.empty()) throw EngineError("ENOSYMBOL", "empty symbol name in '" + qualified + "'");
  const LoadedObject& exe = objects_.front();
  if (auto r = FromObject(exe, *exe.elf, file, name, true)) return *r;
  if (file.empty()) {
    for (size_t i = 1; i < objects_.size(); ++i) {
      if (auto r = FromObject(objects_[i], *objects_[i].elf, "", name, false)) return *r;
    }
  }
  if (const ElfInfo* debug = DebugInfo()) {
    if (auto r = FromObject(exe, *debug, file, name, true)) return *r;
  }
  throw EngineError("ENOSYMBOL", "no symbol '" + qualified + "' in process " + std::to_string(pid_) + ": searched " +
                                     exe.path + " (.symtab, .dynsym" + (file.empty() ? ", the loaded libraries" : "") +
                                     ") and its separate debug info by build-id in " + debug_dirs_.front() +
                                     (debug_dirs_.size() > 1 ? " and others" : ""));
}

}  // namespace hotpatch
