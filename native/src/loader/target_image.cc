#include "target_image.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "../engine_error.h"
#include "../fd.h"
#include "../ptrace/errno_codes.h"
#include "../safe_open.h"
#include "link_map.h"
#include "tls.h"

namespace hotpatch {
namespace {

constexpr uint64_t kPage = 4096;
constexpr char kDeleted[] = " (deleted)";

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

// The path the kernel shows, without the " (deleted)" it appends once the file is unlinked.
std::string WithoutDeleted(const std::string& path, bool& deleted) {
  const size_t n = sizeof kDeleted - 1;
  deleted = path.size() > n && path.compare(path.size() - n, n, kDeleted) == 0;
  return deleted ? path.substr(0, path.size() - n) : path;
}

std::string ReadLink(pid_t pid, const std::string& link) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n < 0) ThrowForErrno(errno, pid, "reading " + link);
  return std::string(buf, static_cast<size_t>(n));
}

// Whether `st` is the file a mapping shows (its device and inode, as /proc/PID/maps prints them).
bool SameFile(const Mapping& m, const struct stat& st) {
  unsigned major_no = 0, minor_no = 0;
  if (std::sscanf(m.dev.c_str(), "%x:%x", &major_no, &minor_no) != 2) return false;
  return m.inode == st.st_ino && major_no == major(st.st_dev) && minor_no == minor(st.st_dev);
}

std::optional<uint64_t> FirstLoadPage(const ElfInfo& elf) {
  for (const auto& ph : elf.program_headers) {
    if (ph.type == PT_LOAD) return ph.vaddr & ~(kPage - 1);
  }
  return std::nullopt;
}

// The load bias of `elf` when its first page is mapped at `start`.
std::optional<uint64_t> BiasAt(const ElfInfo& elf, uint64_t start) {
  const auto first = FirstLoadPage(elf);
  if (!first) return std::nullopt;
  return elf.type == ET_EXEC ? 0 : start - *first;
}

bool InRanges(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t v) {
  return std::any_of(ranges.begin(), ranges.end(), [v](const auto& r) { return v >= r.first && v < r.second; });
}

// The build-id in the object's PT_NOTE segments as loaded in the target.
std::optional<std::string> BuildIdInMemory(const TargetMemory& mem, const ElfInfo& elf, uint64_t bias) {
  for (const auto& ph : elf.program_headers) {
    if (ph.type != PT_NOTE || ph.filesz > 65536) continue;
    std::vector<uint8_t> notes(ph.filesz);
    notes.resize(mem.ReadSome(bias + ph.vaddr, notes.data(), notes.size()));
    for (size_t at = 0; at + 12 <= notes.size();) {
      uint32_t namesz, descsz, type;
      std::memcpy(&namesz, &notes[at], 4);
      std::memcpy(&descsz, &notes[at + 4], 4);
      std::memcpy(&type, &notes[at + 8], 4);
      const size_t name = at + 12, desc = name + ((namesz + 3) & ~3u);
      if (desc + descsz > notes.size()) break;
      if (type == NT_GNU_BUILD_ID && namesz == 4 && std::memcmp(&notes[name], "GNU", 4) == 0) {
        std::string hex;
        for (size_t i = 0; i < descsz; ++i) {
          char b[3];
          std::snprintf(b, sizeof b, "%02x", notes[desc + i]);
          hex += b;
        }
        return hex;
      }
      at = desc + ((descsz + 3) & ~3u);
    }
  }
  return std::nullopt;
}

// What stat says about the file at `path` (inside the target's root) compared with a mapping of it.
OnDisk StateOnDisk(int root_fd, const std::string& path, const Mapping& m) {
  struct stat st {};
  if (!StatInRoot(root_fd, path, st)) return OnDisk::kDeleted;
  return SameFile(m, st) ? OnDisk::kSame : OnDisk::kReplaced;
}

bool IsFunctionOrObject(const ElfSymbol& s) {
  return s.type == STT_FUNC || s.type == STT_OBJECT || s.type == STT_GNU_IFUNC || s.type == STT_NOTYPE;
}

std::string Basename(const std::string& p) {
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// An object as the maps show it, before it is read: an object starts at a mapping of file offset
// 0, and later mappings of the same file (device, inode) extend it.
struct Candidate {
  std::string path;
  bool deleted;
  const Mapping* first;
  uint64_t end;
  std::vector<std::pair<uint64_t, uint64_t>> code;
};

std::vector<Candidate> FindCandidates(const std::vector<Mapping>& maps) {
  std::vector<Candidate> found;
  std::map<std::pair<std::string, uint64_t>, size_t> current;
  for (const Mapping& m : maps) {
    if (m.inode == 0 || m.path.empty() || m.path[0] != '/' || m.path.rfind("/memfd:", 0) == 0) continue;
    const auto key = std::make_pair(m.dev, m.inode);
    if (m.offset == 0) {
      bool deleted = false;
      std::string path = WithoutDeleted(m.path, deleted);
      current[key] = found.size();
      found.push_back({std::move(path), deleted, &m, m.end, {}});
    }
    const auto it = current.find(key);
    if (it == current.end()) continue;
    Candidate& c = found[it->second];
    c.end = std::max(c.end, m.end);
    if (m.perms.size() > 2 && m.perms[2] == 'x') c.code.emplace_back(m.start, m.end);
  }
  return found;
}

}  // namespace

TargetImage::TargetImage(pid_t pid, std::vector<std::string> debug_dirs, ObjectCache& cache)
    : TargetImage(pid, std::move(debug_dirs), cache, ReadProcMaps(pid)) {}

TargetImage::TargetImage(pid_t pid, std::vector<std::string> debug_dirs, ObjectCache& cache, std::vector<Mapping> maps)
    : pid_(pid), debug_dirs_(std::move(debug_dirs)), maps_(std::move(maps)), memory_(pid), cache_(cache) {
  if (debug_dirs_.empty()) debug_dirs_.push_back("/usr/lib/debug");
  const std::string proc = "/proc/" + std::to_string(pid);
  // /proc/PID/exe opens the very file the process runs, even when its path now names another one.
  const std::string exe_link = proc + "/exe";
  UniqueFd exe_fd(::open(exe_link.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  struct stat exe_st {};
  if (!exe_fd.valid() || ::fstat(exe_fd.get(), &exe_st) != 0) ThrowForErrno(errno, pid, "opening " + exe_link);
  // Paths the target shows are names inside its own root: resolved there, never through ours.
  const UniqueFd root_fd = OpenTargetRoot(pid);
  if (!root_fd.valid()) ThrowForErrno(errno, pid, "opening " + proc + "/root");
  bool exe_deleted = false;
  const std::string exe_path = WithoutDeleted(ReadLink(pid, exe_link), exe_deleted);

  bool have_exe = false;
  for (Candidate& c : FindCandidates(maps_)) {
    const bool is_exe =
        !have_exe && (SameFile(*c.first, exe_st) || (c.path == exe_path && c.deleted == exe_deleted));
    LoadedObject obj{c.path, "", OnDisk::kSame, c.first->start, c.end, std::move(c.code), 0, is_exe, std::nullopt, 0,
                     nullptr, ""};
    const std::string at_path = proc + "/root" + c.path;  // for messages: opened by OpenRegularInRoot
    if (is_exe) {
      obj.source = exe_link;
      obj.disk = StateOnDisk(root_fd.get(), c.path, *c.first);
      obj.elf = cache_.Elf(exe_fd.get(), exe_link);
      have_exe = true;
    } else {
      try {
        // The path when it still names the mapped file; otherwise the mapping itself.
        RootOpen opened = OpenRegularInRoot(root_fd.get(), c.path);
        UniqueFd& fd = opened.fd;
        struct stat st {};
        const bool there = opened.not_regular || (fd.valid() && ::fstat(fd.get(), &st) == 0);
        if (there && SameFile(*c.first, st)) {
          obj.source = at_path;
          obj.elf = cache_.Elf(fd.get(), at_path);
        } else {
          obj.disk = there ? OnDisk::kReplaced : OnDisk::kDeleted;
          const std::string mapped = proc + "/map_files/" + Hex(c.first->start) + "-" + Hex(c.first->end);
          UniqueFd mapped_fd(::open(mapped.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
          int err = errno;
          struct stat mapped_st {};
          if (mapped_fd.valid() && (::fstat(mapped_fd.get(), &mapped_st) != 0 || !S_ISREG(mapped_st.st_mode))) {
            mapped_fd.reset();  // a device mapping: nothing ELF to read there
            err = ENODEV;
          }
          if (mapped_fd.valid()) {
            obj.source = mapped;
            obj.elf = cache_.Elf(mapped_fd.get(), mapped);
          } else if (auto elf = fd.valid() ? cache_.Elf(fd.get(), at_path) : nullptr;
                     elf && elf->build_id && BiasAt(*elf, obj.start) &&
                     BuildIdInMemory(memory_, *elf, *BiasAt(*elf, obj.start)) == elf->build_id) {
            // Opening map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE; a file of the very
            // same build (same build-id as the one loaded) describes the mapping just as well.
            obj.source = at_path;
            obj.disk = OnDisk::kSame;
            obj.elf = std::move(elf);
          } else {
            obj.unreadable = c.path + " was " + (there ? "replaced" : "deleted") + " on disk after process " +
                             std::to_string(pid) + " mapped it, and the mapped file cannot be opened through " +
                             mapped + ": " + std::strerror(err) +
                             (err == EPERM || err == EACCES ? " (that needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)" : "");
          }
        }
      } catch (const EngineError& e) {
        obj.unreadable = e.what();
      }
      // Not an ELF object (a locale archive, ...); nor is something unreadable without code worth
      // stopping a lookup for.
      if (!obj.elf && (obj.unreadable.empty() || obj.code.empty())) continue;
    }
    if (obj.elf) {
      const auto bias = BiasAt(*obj.elf, obj.start);
      if (!bias && obj.is_executable) throw EngineError("EBAD_ELF", exe_path + " has no loadable segment");
      if (!bias) continue;  // nothing loadable: not an object ld.so mapped
      obj.bias = *bias;
    }
    objects_.push_back(std::move(obj));
  }
  if (!have_exe) {
    throw EngineError("EBAD_ELF", "no mapping of process " + std::to_string(pid) + " holds its executable " + exe_path);
  }
  std::stable_partition(objects_.begin(), objects_.end(), [](const LoadedObject& o) { return o.is_executable; });
  OrderByLinkMap();
}

void TargetImage::OrderByLinkMap() {
  const LoadedObject& exe = objects_.front();
  uint64_t dynamic = 0, dynamic_size = 0;
  for (const auto& ph : exe.elf->program_headers) {
    if (ph.type == PT_DYNAMIC) {
      dynamic = exe.bias + ph.vaddr;
      dynamic_size = ph.memsz;
    }
  }
  auto r_debug_symbol = [this]() -> uint64_t {
    for (const LoadedObject& obj : objects_) {
      if (!obj.elf || obj.is_executable) continue;
      for (const ElfSymbol& s : obj.elf->symbols) {
        if (s.name == "_r_debug" && s.shndx != SHN_UNDEF && s.bind != STB_LOCAL) return obj.bias + s.value;
      }
    }
    return 0;
  };
  const LinkMapChain chain = ReadLinkMap(memory_, dynamic, dynamic_size, r_debug_symbol);
  if (!chain.unavailable.empty()) {
    order_ = {false, chain.unavailable};
    return;
  }
  for (size_t k = 0; k < chain.entries.size(); ++k) {
    const LinkMapEntry& e = chain.entries[k];
    for (LoadedObject& obj : objects_) {
      if (!obj.link_map_index && e.l_ld >= obj.start && e.l_ld < obj.end && (!obj.elf || obj.bias == e.l_addr)) {
        obj.link_map_index = k;
        obj.link_map = e.address;
        break;
      }
    }
  }
  if (objects_.front().link_map_index != size_t{0}) {
    for (LoadedObject& obj : objects_) obj.link_map_index.reset();
    order_ = {false, "the dynamic linker's list of objects does not start with the executable"};
    return;
  }
  // Objects ld.so does not list (mapped by other means) keep their maps order, after the listed ones.
  std::stable_sort(objects_.begin(), objects_.end(), [](const LoadedObject& a, const LoadedObject& b) {
    return a.link_map_index.value_or(SIZE_MAX) < b.link_map_index.value_or(SIZE_MAX);
  });
  order_ = {true, ""};
}

std::optional<uint64_t> TargetImage::Word(uint64_t addr) const {
  uint64_t v = 0;
  if (memory_.ReadSome(addr, reinterpret_cast<uint8_t*>(&v), sizeof v) != sizeof v) return std::nullopt;
  return v;
}

// An IFUNC symbol's value is its resolver, which picked an implementation (for this CPU and the
// target's GLIBC_TUNABLES) when ld.so relocated the target. No code of the target may run, so the
// choice is read back from a GOT slot ld.so filled: the defining object's IRELATIVE slot for this
// resolver, or any object's slot bound to the name. Only an address in the defining object's code
// outside its PLT (or in the vDSO, where time() lives) is a choice; anything else is a lazy slot
// not bound yet, or one bound to another definition.
uint64_t TargetImage::ResolveIfunc(const LoadedObject& def, const ElfSymbol& sym) const {
  std::vector<std::pair<uint64_t, uint64_t>> plt;
  for (const ElfSection& s : def.elf->sections) {
    if (s.name.rfind(".plt", 0) == 0) plt.emplace_back(def.bias + s.addr, def.bias + s.addr + s.size);
  }
  std::vector<std::pair<uint64_t, uint64_t>> vdso;
  for (const Mapping& m : maps_) {
    if (m.path == "[vdso]") vdso.emplace_back(m.start, m.end);
  }
  auto is_choice = [&](uint64_t v) {
    return v != def.bias + sym.value && ((InRanges(def.code, v) && !InRanges(plt, v)) || InRanges(vdso, v));
  };
  for (const ElfGotSlot& s : def.elf->got_slots) {
    if (s.type != R_X86_64_IRELATIVE || static_cast<uint64_t>(s.addend) != sym.value) continue;
    if (auto v = Word(def.bias + s.offset); v && is_choice(*v)) return *v;
  }
  for (const LoadedObject& obj : objects_) {
    if (!obj.elf) continue;
    for (const ElfGotSlot& s : obj.elf->got_slots) {
      if (s.type == R_X86_64_IRELATIVE || s.symbol != sym.name) continue;
      if (auto v = Word(obj.bias + s.offset); v && is_choice(*v)) return *v;
    }
  }
  return IfuncFromOwnCopy(def, sym);
}

// For an IFUNC the target has bound nowhere: the implementation our own process got from the same
// build of the library, trusted only when every IRELATIVE choice of that library agrees between
// the target and us (same CPU features, same tunables), so that its resolvers choose alike.
uint64_t TargetImage::IfuncFromOwnCopy(const LoadedObject& def, const ElfSymbol& sym) const {
  auto refuse = [&](const std::string& why) {
    return EngineError("EUNSUPPORTED_PATCH",
                       "'" + sym.name + "' in " + def.path + " is an IFUNC that process " + std::to_string(pid_) +
                           " has bound in no GOT slot, and " + why +
                           ", so hotpatch cannot tell which implementation the target would choose without running "
                           "its code; call an implementation by its own name, or let the target call '" +
                           sym.name + "' once first");
  };
  void* impl = dlsym(RTLD_DEFAULT, sym.name.c_str());
  Dl_info info{};
  std::shared_ptr<const ElfInfo> ours;
  if (impl != nullptr && dladdr(impl, &info) != 0 && info.dli_fname != nullptr) {
    try {
      ours = cache_.Elf(info.dli_fname);
    } catch (const EngineError&) {
      // not a file (the vDSO): no copy to compare with
    }
  }
  const auto first = ours ? FirstLoadPage(*ours) : std::nullopt;
  if (!first || !ours->build_id || ours->build_id != def.elf->build_id) {
    throw refuse("hotpatch's own process has no copy of the same build to compare with");
  }
  const uint64_t our_bias = reinterpret_cast<uint64_t>(info.dli_fbase) - *first;
  size_t compared = 0, differ = 0;
  for (const ElfGotSlot& s : def.elf->got_slots) {
    const auto theirs = s.type == R_X86_64_IRELATIVE ? Word(def.bias + s.offset) : std::nullopt;
    if (!theirs) continue;
    uint64_t mine = 0;
    std::memcpy(&mine, reinterpret_cast<const void*>(our_bias + s.offset), sizeof mine);
    if (*theirs == 0 || mine == 0) continue;  // a slot holding no address (glibc 2.36 has one)
    ++compared;
    if (*theirs - def.bias != mine - our_bias) ++differ;
  }
  if (compared == 0) throw refuse("the library has no other IFUNC choices to compare with hotpatch's own process");
  if (differ != 0) {
    throw refuse("its ld.so chose other implementations than hotpatch's own process for " + std::to_string(differ) +
                 " of " + std::to_string(compared) + " IFUNCs of that library (GLIBC_TUNABLES?)");
  }
  return def.bias + (reinterpret_cast<uint64_t>(impl) - our_bias);
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
  if (pick->type != STT_GNU_IFUNC) return ResolvedSymbol{obj.bias + pick->value, pick->size, pick->type, obj.path};
  const uint64_t impl = ResolveIfunc(obj, *pick);
  uint64_t size = 0;
  for (const ElfSymbol& s : obj.elf->symbols) {
    if (s.type == STT_FUNC && s.size > 0 && obj.bias + s.value == impl) size = s.size;
  }
  return ResolvedSymbol{impl, size, STT_FUNC, obj.path};
}

const ElfInfo* TargetImage::DebugInfo() const {
  if (!debug_) {
    debug_ = std::shared_ptr<const ElfInfo>();
    const LoadedObject& exe = objects_.front();
    std::vector<std::string> candidates;
    const auto& id = exe.elf->build_id;
    for (const auto& dir : debug_dirs_) {
      if (id && id->size() > 2) candidates.push_back(dir + "/.build-id/" + id->substr(0, 2) + "/" + id->substr(2) + ".debug");
      // The link is the target's word: a bare file name, never a path out of the debug folder.
      if (exe.elf->debug_link && exe.elf->debug_link->find('/') == std::string::npos && *exe.elf->debug_link != "..") {
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
  // The executable's separate debug info stands in for the .symtab a stripped build lacks, before
  // the libraries, so that stripping changes no answer (its statics win over their exports).
  const ElfInfo* debug = DebugInfo();
  if (debug != nullptr) {
    if (auto r = FromObject(exe, *debug, file, name, true)) return *r;
  }
  if (file.empty()) {
    for (size_t i = 1; i < objects_.size(); ++i) {
      const LoadedObject& obj = objects_[i];
      // An object that may come first and define the name decides; guessing past it could bind
      // the patch to another definition than the target's.
      if (!obj.elf) {
        throw EngineError("EELF_OPEN", "cannot tell which object of process " + std::to_string(pid_) + " defines '" +
                                           name + "': " + obj.unreadable);
      }
      if (auto r = FromObject(obj, *obj.elf, "", name, false)) return *r;
    }
  }
  const std::string order =
      order_.link_map ? " in the dynamic linker's order" : " in address order (" + order_.reason + ")";
  throw EngineError("ENOSYMBOL", "no symbol '" + qualified + "' in process " + std::to_string(pid_) + ": searched " +
                                     exe.path + " (.symtab, .dynsym" +
                                     (file.empty() ? ", the loaded libraries" + order : "") +
                                     ") and its separate debug info by build-id in " + debug_dirs_.front() +
                                     (debug_dirs_.size() > 1 ? " and others" : ""));
}

ResolvedTls TargetImage::ResolveTls(const std::string& name) const {
  // The executable's own variables (statics too, by .symtab), then its debug info, then the
  // libraries' exported ones in the dynamic linker's order: the definition the target uses.
  auto find = [&](const ElfInfo& symbols, bool locals) -> const ElfSymbol* {
    const ElfSymbol* pick = nullptr;
    for (const ElfSymbol& s : symbols.symbols) {
      if (s.name != name || s.type != STT_TLS || s.shndx == SHN_UNDEF || s.hidden_version) continue;
      if (s.bind == STB_LOCAL && !locals) continue;
      if (pick == nullptr || (pick->bind == STB_LOCAL && s.bind != STB_LOCAL)) pick = &s;
    }
    return pick;
  };
  const LoadedObject& exe = objects_.front();
  const ElfSymbol* sym = find(*exe.elf, true);
  if (sym == nullptr && DebugInfo() != nullptr) sym = find(*DebugInfo(), true);
  const LoadedObject* def = sym != nullptr ? &exe : nullptr;
  for (size_t i = 1; def == nullptr && i < objects_.size(); ++i) {
    if (!objects_[i].elf) {
      throw EngineError("EELF_OPEN", "cannot tell which object of process " + std::to_string(pid_) +
                                         " defines the thread-local '" + name + "': " + objects_[i].unreadable);
    }
    if ((sym = find(*objects_[i].elf, false)) != nullptr) def = &objects_[i];
  }
  if (def == nullptr) {
    throw EngineError("ENOSYMBOL", "no thread-local variable '" + name + "' in process " + std::to_string(pid_) +
                                       ": searched " + exe.path + " and the loaded libraries");
  }
  const TlsBlock block = ReadTlsBlock(memory_, *def);
  return ResolvedTls{sym->value, block.modid, block.static_offset, def->path};
}

}  // namespace hotpatch
