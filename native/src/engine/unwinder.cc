#include "unwinder.h"

#include <elf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>


namespace hotpatch {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kMaxFrames = 256;  // deeper than any real stack we need to judge exactly

// x86-64 DWARF register numbers: rax rdx rcx rbx rsi rdi rbp rsp r8..r15, then the RA column (rip).
void DwarfRegisters(const user_regs_struct& r, Dwarf_Word out[17]) {
  const unsigned long long v[17] = {r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8,
                                    r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip};
  for (int i = 0; i < 17; ++i) out[i] = v[i];
}

// ".cold", ".cold.3", ".part.0", ".part.0.cold": what GCC splits off a function (hot/cold
// partitioning and partial inlining). Clones such as ".isra.0" or ".constprop.1" are functions of
// their own that callers call directly, not parts of this one.
bool IsSplitSuffix(const std::string& suffix) {
  if (suffix.empty() || suffix[0] != '.') return false;
  size_t i = 1;
  bool named = false;
  while (i <= suffix.size()) {
    const size_t dot = suffix.find('.', i);
    const std::string part = suffix.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(c); });
    if (part == "cold" || part == "part") named = true;
    else if (!digits || !named) return false;
    if (dot == std::string::npos) break;
    i = dot + 1;
  }
  return named;
}

bool Covers(Dwarf_CFI* cfi, uint64_t addr) {
  Dwarf_Frame* frame = nullptr;
  if (cfi == nullptr || dwarf_cfi_addrframe(cfi, addr, &frame) != 0) return false;
  std::free(frame);
  return true;
}

}  // namespace

struct StackUnwinder::Session {
  pid_t pid = 0;
  Dwfl* dwfl = nullptr;
  // Per stop: the memory we read (whole pages), and the thread being unwound.
  const StoppedProcess* stopped = nullptr;
  const ThreadState* thread = nullptr;
  const std::map<uint64_t, uint64_t>* overlay = nullptr;
  std::unordered_map<uint64_t, std::unique_ptr<std::array<uint8_t, kPage>>> pages;
  std::unordered_map<uint64_t, bool> unreadable;
  // Per unwind: the words read since the last frame (one of them is the next return address).
  std::vector<std::pair<uint64_t, uint64_t>> reads;
  UnwoundStack* out = nullptr;
  uint64_t rsp = 0;             // the stack pointer of the last trusted frame
  bool last_step_cfi = false;   // the last frame's address has CFI, so its step came from CFI
  bool aborted = false;
  // Static facts, kept across stops.
  std::unordered_map<uint64_t, bool> cfi_covers;
  int cxx_unwinder = -1;

  bool ReadWord(uint64_t addr, uint64_t* value) {
    if (overlay != nullptr) {
      const auto it = overlay->find(addr);
      if (it != overlay->end()) {
        *value = it->second;
        return true;
      }
    }
    uint8_t buf[8];
    for (size_t i = 0; i < 8;) {
      const uint64_t a = addr + i;
      const uint8_t* page = Page(a & ~uint64_t{kPage - 1});
      if (page == nullptr) return false;
      const size_t off = a & (kPage - 1);
      const size_t n = std::min<size_t>(8 - i, kPage - off);
      std::memcpy(buf + i, page + off, n);
      i += n;
    }
    std::memcpy(value, buf, 8);
    return true;
  }

  const uint8_t* Page(uint64_t base) {
    if (const auto it = pages.find(base); it != pages.end()) return it->second->data();
    if (unreadable.count(base) != 0) return nullptr;
    auto page = std::make_unique<std::array<uint8_t, kPage>>();
    if (stopped->memory().ReadSome(base, page->data(), kPage) != kPage) {
      unreadable[base] = true;
      return nullptr;
    }
    return pages.emplace(base, std::move(page)).first->second->data();
  }

  bool CfiCovers(uint64_t addr) {
    if (const auto it = cfi_covers.find(addr); it != cfi_covers.end()) return it->second;
    bool covered = false;
    if (Dwfl_Module* m = dwfl_addrmodule(dwfl, addr)) {
      Dwarf_Addr bias = 0;
      Dwarf_CFI* eh = dwfl_module_eh_cfi(m, &bias);
      covered = Covers(eh, addr - bias);
      if (!covered) {
        Dwarf_CFI* debug = dwfl_module_dwarf_cfi(m, &bias);
        covered = Covers(debug, addr - bias);
      }
    }
    return cfi_covers[addr] = covered;
  }
};

namespace {

StackUnwinder::Session* SessionOf(void* arg) { return static_cast<StackUnwinder::Session*>(arg); }

pid_t NextThread(Dwfl*, void*, void**) { return 0; }  // we unwind one given thread at a time

bool GetThread(Dwfl*, pid_t tid, void* arg, void** thread_arg) {
  *thread_arg = arg;
  return SessionOf(arg)->thread != nullptr && SessionOf(arg)->thread->tid == tid;
}

bool MemoryRead(Dwfl*, Dwarf_Addr addr, Dwarf_Word* result, void* arg) {
  auto* s = SessionOf(arg);
  uint64_t v = 0;
  if (!s->ReadWord(addr, &v)) return false;
  *result = v;
  s->reads.emplace_back(addr, v);
  return true;
}

bool SetInitialRegisters(Dwfl_Thread* thread, void* arg) {
  Dwarf_Word regs[17];
  DwarfRegisters(SessionOf(arg)->thread->regs, regs);
  if (!dwfl_thread_state_registers(thread, 0, 17, regs)) return false;
  dwfl_thread_state_register_pc(thread, regs[16]);
  return true;
}

const Dwfl_Thread_Callbacks kThreadCallbacks = {NextThread, GetThread, MemoryRead, SetInitialRegisters, nullptr,
                                                nullptr};

// Separate debug files are looked for only where a name is needed (split parts, the timeout
// message), never for CFI: .eh_frame is in the objects themselves, while opening libc's debug
// file costs most of a second (measured: 770 ms), which must never happen inside a stop.
thread_local bool tl_debuginfo_allowed = false;

int FindDebuginfo(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base, const char* file_name,
                  const char* debuglink_file, GElf_Word debuglink_crc, char** debuginfo_file_name) {
  if (!tl_debuginfo_allowed) return -1;
  return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file, debuglink_crc,
                                      debuginfo_file_name);
}

// Lets one scope look for separate debug files.
struct DebuginfoAllowed {
  DebuginfoAllowed() { tl_debuginfo_allowed = true; }
  ~DebuginfoAllowed() { tl_debuginfo_allowed = false; }
};

char* kDebugPath = nullptr;
const Dwfl_Callbacks kProcCallbacks = {dwfl_linux_proc_find_elf, FindDebuginfo, nullptr, &kDebugPath};

// Trusts a frame only when the step that produced it came from CFI and read its return address
// from the stack; the first untrusted step ends the exact part of the unwind.
int OnFrame(Dwfl_Frame* frame, void* arg) {
  auto* s = SessionOf(arg);
  // The words read for the step that produced this frame. dwfl_frame_pc may already unwind this
  // frame (to see whether its caller is a signal frame): what it reads belongs to the next step.
  const std::vector<std::pair<uint64_t, uint64_t>> step = std::move(s->reads);
  s->reads.clear();
  Dwarf_Addr pc = 0;
  bool activation = false;
  if (!dwfl_frame_pc(frame, &pc, &activation)) {
    s->aborted = true;
    return DWARF_CB_ABORT;
  }
  auto& frames = s->out->frames;
  if (!frames.empty()) {
    uint64_t slot = 0;
    for (auto it = step.rbegin(); it != step.rend(); ++it) {
      if (it->second == pc) {
        slot = it->first;
        break;
      }
    }
    if (!s->last_step_cfi || slot == 0 || slot < s->rsp || frames.size() >= kMaxFrames) {
      s->aborted = true;
      return DWARF_CB_ABORT;
    }
    frames.back().ra_slot = slot;
    s->rsp = slot + 8;
  }
  frames.push_back({pc, activation, 0});
  s->last_step_cfi = s->CfiCovers(activation ? pc : pc - 1);
  return DWARF_CB_OK;
}

}  // namespace

std::shared_ptr<StackUnwinder> StackUnwinder::Open(pid_t pid) {
  std::shared_ptr<StackUnwinder> u(new StackUnwinder(pid));
  return u->s_->dwfl != nullptr ? u : nullptr;
}

StackUnwinder::StackUnwinder(pid_t pid) : s_(std::make_unique<Session>()) {
  s_->pid = pid;
  s_->dwfl = dwfl_begin(&kProcCallbacks);
  if (s_->dwfl == nullptr) return;
  dwfl_report_begin(s_->dwfl);
  const int r = dwfl_linux_proc_report(s_->dwfl, pid);
  dwfl_report_end(s_->dwfl, nullptr, nullptr);
  if (r != 0 || !dwfl_attach_state(s_->dwfl, nullptr, pid, &kThreadCallbacks, s_.get())) {
    dwfl_end(s_->dwfl);
    s_->dwfl = nullptr;
    return;
  }
  // Load every module's .eh_frame now, so that no stop waits for files to be opened and parsed.
  dwfl_getmodules(
      s_->dwfl,
      [](Dwfl_Module* m, void**, const char*, Dwarf_Addr, void*) -> int {
        Dwarf_Addr bias = 0;
        dwfl_module_eh_cfi(m, &bias);
        return DWARF_CB_OK;
      },
      nullptr, 0);
}

StackUnwinder::~StackUnwinder() {
  if (s_->dwfl != nullptr) dwfl_end(s_->dwfl);
}

void StackUnwinder::NewStop() {
  s_->pages.clear();
  s_->unreadable.clear();
}

UnwoundStack StackUnwinder::Unwind(const StoppedProcess& stopped, const ThreadState& t,
                              const std::map<uint64_t, uint64_t>& overlay) {
  UnwoundStack out;
  Session& s = *s_;
  s.stopped = &stopped;
  s.thread = &t;
  s.overlay = &overlay;
  s.out = &out;
  s.reads.clear();
  s.rsp = t.regs.rsp;
  s.last_step_cfi = false;
  s.aborted = false;
  const int r = dwfl_getthread_frames(s.dwfl, t.tid, OnFrame, &s);
  // A normal end means CFI said "no caller" (the thread's first frame); only CFI may say so.
  out.complete = r == 0 && !s.aborted && s.last_step_cfi && !out.frames.empty();
  out.rest_from = s.rsp;
  s.thread = nullptr;
  s.overlay = nullptr;
  s.out = nullptr;
  return out;
}

std::vector<SplitPart> StackUnwinder::SplitPartsOf(uint64_t addr, const std::string& name) {
  const DebuginfoAllowed allowed;  // a stripped program keeps its .cold symbols in its debug file
  std::vector<SplitPart> parts;
  Dwfl_Module* m = dwfl_addrmodule(s_->dwfl, addr);
  if (m == nullptr) return parts;
  const std::string base = name.substr(name.rfind(':') == std::string::npos ? 0 : name.rfind(':') + 1);
  const int n = dwfl_module_getsymtab(m);
  for (int i = 0; i < n; ++i) {
    GElf_Sym sym;
    GElf_Addr value = 0;
    GElf_Word shndx = 0;
    const char* sname = dwfl_module_getsym_info(m, i, &sym, &value, &shndx, nullptr, nullptr);
    if (sname == nullptr || GELF_ST_TYPE(sym.st_info) != STT_FUNC || shndx == SHN_UNDEF) continue;
    const std::string full = sname;
    if (full.size() <= base.size() || full.compare(0, base.size(), base) != 0) continue;
    if (!IsSplitSuffix(full.substr(base.size()))) continue;
    parts.push_back({value, value + std::max<uint64_t>(sym.st_size, 1), full});
  }
  return parts;
}

bool StackUnwinder::HasCxxUnwinder() {
  if (s_->cxx_unwinder >= 0) return s_->cxx_unwinder == 1;
  bool found = false;
  dwfl_getmodules(
      s_->dwfl,
      [](Dwfl_Module* m, void**, const char* name, Dwarf_Addr, void* arg) -> int {
        bool& hit = *static_cast<bool*>(arg);
        if (name != nullptr && std::strstr(name, "libgcc_s") != nullptr) hit = true;
        const int n = hit ? 0 : dwfl_module_getsymtab(m);
        for (int i = 0; i < n && !hit; ++i) {
          GElf_Sym sym;
          GElf_Word shndx = 0;
          GElf_Addr value = 0;
          const char* s = dwfl_module_getsym_info(m, i, &sym, &value, &shndx, nullptr, nullptr);
          hit = s != nullptr && shndx != SHN_UNDEF && std::strcmp(s, "_Unwind_RaiseException") == 0;
        }
        return hit ? DWARF_CB_ABORT : DWARF_CB_OK;
      },
      &found, 0);
  s_->cxx_unwinder = found ? 1 : 0;
  return found;
}

std::string StackUnwinder::Describe(uint64_t addr) {
  const DebuginfoAllowed allowed;
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(addr));
  Dwfl_Module* m = dwfl_addrmodule(s_->dwfl, addr);
  if (m == nullptr) return hex;
  const char* module = dwfl_module_info(m, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  std::string where = module != nullptr ? module : "?";
  where = where.substr(where.rfind('/') == std::string::npos ? 0 : where.rfind('/') + 1);
  GElf_Off off = 0;
  GElf_Sym sym;
  const char* name = dwfl_module_addrinfo(m, addr, &off, &sym, nullptr, nullptr, nullptr);
  if (name == nullptr) return std::string(hex) + " (" + where + ")";
  char o[32];
  std::snprintf(o, sizeof o, "+0x%llx", static_cast<unsigned long long>(off));
  return std::string(name) + o + " (" + where + ")";
}

}  // namespace hotpatch
