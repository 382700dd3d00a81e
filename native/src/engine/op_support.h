// What the patch operations share: field helpers for the descriptor, the path under which a
// target opens the patch, the choice of a thread for the target's loader, and the retry loop
// that runs an attempt in short separate stops until no thread is in the way.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../engine_error.h"
#include "../proc_maps.h"
#include "../ptrace/stopped_process.h"
#include "descriptor.h"
#include "dlopen_api.h"
#include "patch_ops.h"
#include "safety.h"

namespace hotpatch {

constexpr auto kStopTimeout = std::chrono::seconds(2);

std::string Hex(uint64_t v);
// /proc/PID/maps's spelling of a private mapping's protection.
std::string PermsOf(int prot);
std::string Str(const char* field, size_t cap);
void CopyField(char* dst, size_t cap, const std::string& value, const char* what);
DescPatch* FindPatch(Descriptor& desc, const std::string& id);
DescPatch& RequirePatch(Descriptor& desc, const std::string& id, pid_t pid);
bool Cancelled(const OpOptions& opts);
void Sleep(std::chrono::microseconds d);

// Picks a thread to run the target's loader on: one that is not inside the loader or the
// allocator itself (it could hold their locks and would then wait on itself), and lets every
// other thread run meanwhile, so that whoever holds a lock releases it: never a deadlock.
std::optional<Conflict> PrepareLoaderCall(StoppedProcess& stopped, std::vector<Mapping>& maps, const DlopenApi& api);

// Runs `attempt` inside a stop of every thread until it reports no conflict. A conflict means a
// thread is where we must not write: let the target run a little (so the thread can leave), with
// exponential backoff, and try again in a fresh, short stop until the deadline.
template <typename Attempt>
OpResult WithRetries(pid_t pid, const OpOptions& opts, Attempt attempt) {
  OpResult result{};
  const auto deadline = Clock::now() + opts.safety_timeout;
  auto backoff = std::chrono::microseconds(500);
  for (;;) {
    std::optional<StoppedProcess> holder;
    try {
      holder.emplace(pid, Clock::now() + kStopTimeout);
    } catch (const EngineError& e) {
      // Gone between two tries: say so plainly rather than "no such process".
      if (result.attempts > 0 && (e.code() == "ENOPROCESS" || e.code() == "EZOMBIE")) {
        throw EngineError("ETARGET_EXITED", "process " + std::to_string(pid) + " exited during the operation");
      }
      throw;
    }
    StoppedProcess& stopped = *holder;
    const std::optional<Conflict> conflict = attempt(stopped, result);
    stopped.Resume();
    result.pause_us = std::max(result.pause_us, stopped.PauseMicros());
    ++result.attempts;
    if (!conflict) return result;
    if (Clock::now() + backoff > deadline) {
      throw EngineError("EUNSAFE_TIMEOUT", DescribeConflict(pid, *conflict) + "; gave up after " +
                                               std::to_string(result.attempts) + " tries in " +
                                               std::to_string(opts.safety_timeout.count()) +
                                               " ms (retry later, or use consistency 'entry' if the function never returns)");
    }
    if (Cancelled(opts)) throw EngineError("ECANCELLED", "cancelled while waiting for a safe moment");
    Sleep(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(64'000));
  }
}

}  // namespace hotpatch
