#include "safety.h"

#include <algorithm>
#include <cstdio>

namespace hotpatch {
namespace {

constexpr size_t kMaxStackScan = 8u << 20;  // the default thread stack size; deeper is not a real stack

const GuardedRange* Hit(const std::vector<GuardedRange>& ranges, uint64_t p) {
  for (const auto& r : ranges) {
    if (p >= r.lo && p < r.hi) return &r;
  }
  return nullptr;
}

const Mapping* MappingOf(const std::vector<Mapping>& maps, uint64_t addr) {
  for (const auto& m : maps) {
    if (addr >= m.start && addr < m.end) return &m;
  }
  return nullptr;
}

// The conservative scan of one stack from `from` to the end of its mapping; `overlay` words
// replace what memory holds.
std::optional<Conflict> ScanStack(const StoppedProcess& stopped, std::vector<Mapping>& maps,
                                  const std::vector<GuardedRange>& ranges, pid_t tid, uint64_t from,
                                  const std::map<uint64_t, uint64_t>& overlay) {
  const Mapping* stack = MappingOf(maps, from);
  if (stack == nullptr) {
    maps = ReadProcMaps(stopped.pid());  // a thread started after `maps` was read
    stack = MappingOf(maps, from);
  }
  if (stack == nullptr) return std::nullopt;  // rsp outside any mapping: nothing to scan
  from &= ~uint64_t{7};
  const size_t len = static_cast<size_t>(std::min<uint64_t>(stack->end - from, kMaxStackScan)) & ~size_t{7};
  std::vector<uint64_t> words(len / 8);
  const size_t got = stopped.memory().ReadSome(from, reinterpret_cast<uint8_t*>(words.data()), len);
  for (size_t i = 0; i < got / 8; ++i) {
    const auto o = overlay.find(from + i * 8);
    const uint64_t w = o != overlay.end() ? o->second : words[i];
    if (const GuardedRange* r = Hit(ranges, w)) return Conflict{tid, w, false, r->name};
  }
  return std::nullopt;
}

const std::map<uint64_t, uint64_t> kNoOverlay;

std::string Hex(uint64_t v) {
  char pos[32];
  std::snprintf(pos, sizeof pos, "0x%llx", static_cast<unsigned long long>(v));
  return pos;
}

std::string DescribeOne(pid_t pid, const Conflict& c) {
  std::string out = "thread " + std::to_string(c.tid) + " of process " + std::to_string(pid) +
                    (c.is_pc ? " is executing in " : " will return into ") + c.name + " (" +
                    (c.is_pc ? "pc " : "return address ") + Hex(c.position) + ")";
  if (c.scanned) out += " found by a scan of the part of its stack that could not be unwound";
  if (!c.frames.empty()) {
    out += ", frames:";
    for (size_t i = 0; i < c.frames.size(); ++i) {
      out += (i == 0 ? " " : " <- ") + (c.symbols ? c.symbols->Describe(c.frames[i]) : Hex(c.frames[i]));
    }
  }
  return out;
}

}  // namespace

std::optional<Conflict> FindConflict(const StoppedProcess& stopped, std::vector<Mapping>& maps,
                                     const std::vector<GuardedRange>& ranges, pid_t only) {
  if (ranges.empty()) return std::nullopt;
  for (const ThreadState& t : stopped.threads()) {
    if (only != 0 && t.tid != only) continue;
    if (const GuardedRange* r = Hit(ranges, t.regs.rip)) return Conflict{t.tid, t.regs.rip, true, r->name};
    if (auto c = ScanStack(stopped, maps, ranges, t.tid, t.regs.rsp, kNoOverlay)) return c;
  }
  return std::nullopt;
}

ExactCheck::ExactCheck(pid_t pid, std::vector<GuardedRange> ranges,
                       const std::vector<std::pair<uint64_t, std::string>>& owners)
    : ranges_(std::move(ranges)) {
  unwinder_ = StackUnwinder::Open(pid);
  if (!unwinder_) return;  // every stack gets the conservative scan
  for (const auto& [addr, name] : owners) {
    for (const SplitPart& p : unwinder_->SplitPartsOf(addr, name)) {
      ranges_.push_back({p.lo, p.hi, name + " (its split-off part " + p.name + ")"});
    }
  }
  if (!owners.empty()) unwinder_->HasCxxUnwinder();  // read the symbol tables now, not in a stop
}

std::vector<BusyThread> ExactCheck::Busy(const StoppedProcess& stopped, std::vector<Mapping>& maps,
                                         const std::map<uint64_t, uint64_t>& overlay, const std::vector<pid_t>* only) {
  std::vector<BusyThread> busy;
  if (ranges_.empty()) return busy;
  if (unwinder_) unwinder_->NewStop();
  for (const ThreadState& t : stopped.threads()) {
    if (only != nullptr && std::find(only->begin(), only->end(), t.tid) == only->end()) continue;
    UnwoundStack stack;
    if (unwinder_) stack = unwinder_->Unwind(stopped, t, overlay);
    if (stack.frames.empty()) stack = {{{t.regs.rip, true, 0}}, false, t.regs.rsp};
    // The outermost real frame inside a guarded range: a PC there, or a return address whose call
    // instruction (the byte before it) is there.
    int outermost = -1;
    const GuardedRange* range = nullptr;
    for (size_t k = 0; k < stack.frames.size(); ++k) {
      const Frame& f = stack.frames[k];
      if (const GuardedRange* r = Hit(ranges_, f.activation ? f.pc : f.pc - 1)) {
        outermost = static_cast<int>(k);
        range = r;
      }
    }
    std::optional<Conflict> scanned;
    if (!stack.complete) scanned = ScanStack(stopped, maps, ranges_, t.tid, stack.rest_from, overlay);
    if (outermost < 0 && !scanned) continue;

    BusyThread b{t.tid, {}};
    std::vector<uint64_t> frames;
    const size_t shown = scanned ? stack.frames.size() : static_cast<size_t>(outermost) + 1;
    for (size_t k = 0; k < shown; ++k) frames.push_back(stack.frames[k].pc);
    if (scanned) {
      b.conflict = *scanned;
      b.conflict.scanned = true;
    } else {
      const Frame& f = stack.frames[outermost];
      b.conflict = Conflict{t.tid, f.pc, f.activation, range->name};
      // Its return address is hijackable when the frame above it is a plain call's (not a signal's).
      const size_t above = static_cast<size_t>(outermost) + 1;
      if (above < stack.frames.size() && !stack.frames[above].activation && f.ra_slot != 0) {
        b.ra_slot = f.ra_slot;
        b.return_to = stack.frames[above].pc;
      }
    }
    b.conflict.frames = std::move(frames);
    b.conflict.symbols = unwinder_;
    busy.push_back(std::move(b));
  }
  return busy;
}

Conflict ExactCheck::Combine(const std::vector<BusyThread>& busy) {
  Conflict first = busy.front().conflict;
  for (size_t i = 1; i < busy.size(); ++i) first.others.push_back(busy[i].conflict);
  return first;
}

std::string DescribeConflict(pid_t pid, const Conflict& c) {
  std::string out = DescribeOne(pid, c);
  for (const Conflict& o : c.others) out += "; " + DescribeOne(pid, o);
  return out;
}

}  // namespace hotpatch
