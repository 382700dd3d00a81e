#include "batch.h"

#include <atomic>
#include <cstring>
#include <thread>

#include "../engine_error.h"

namespace hotpatch {

BatchResult ApplyOne(pid_t pid, const PatchSpec& spec, const OpOptions& opts) {
  BatchResult out{pid, BatchResult::Outcome::kFailed, {}, "", ""};
  bool loaded_here = false;
  try {
    ProcessSession session(pid);  // one read of the maps, the descriptor and the entry point
    const DescPatch* present = nullptr;
    for (const auto& p : session.desc.patches) {
      if (std::string(p.id, strnlen(p.id, sizeof p.id)) == spec.id) present = &p;
    }
    if (present != nullptr && present->state == static_cast<uint32_t>(PatchState::kActive)) {
      out.outcome = BatchResult::Outcome::kAlready;
      out.result.record = *present;
      return out;
    }
    uint64_t load_pause = 0;
    if (present == nullptr) {
      load_pause = LoadPatch(session, spec, opts).pause_us;
      loaded_here = true;
    }
    out.result = ActivatePatch(session, spec.id, opts);
    out.result.pause_us = std::max(out.result.pause_us, load_pause);
    out.outcome = BatchResult::Outcome::kDone;
  } catch (const EngineError& e) {
    out.code = e.code();
    out.message = e.what();
    const bool gone = e.code() == "ENOPROCESS" || e.code() == "EZOMBIE" || e.code() == "ETARGET_EXITED";
    if (loaded_here && gone) {
      // It died after this call had mapped the patch into it: it exited during the operation (not
      // before it), and a dead process has nothing left to unload.
      out.code = "ETARGET_EXITED";
      if (e.code() != "ETARGET_EXITED") {
        out.message = "process " + std::to_string(pid) + " exited during the operation: " + out.message;
      }
    } else if (loaded_here) {
      // Leave the process as it was: take back what this call mapped.
      OpOptions quick = opts;
      quick.safety_timeout = std::chrono::milliseconds(1000);
      try {
        UnloadPatch(pid, spec.id, quick);
      } catch (const EngineError&) {
        out.message += " (and the loaded patch could not be unloaded again; `hotpatch ps` shows it)";
      }
    }
  }
  return out;
}

std::vector<BatchResult> ApplyBatch(const std::vector<pid_t>& pids, const PatchSpec& spec, const OpOptions& opts,
                                    unsigned parallel) {
  std::vector<BatchResult> results(pids.size());
  ObjectCache cache;
  OpOptions shared = opts;
  shared.cache = &cache;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < pids.size(); i = next++) {
      if (opts.cancelled != nullptr && opts.cancelled->load(std::memory_order_relaxed) != 0) {
        results[i] = {pids[i], BatchResult::Outcome::kFailed, {}, "ECANCELLED",
                      "cancelled before process " + std::to_string(pids[i]) + " was reached; it was not touched"};
        continue;
      }
      results[i] = ApplyOne(pids[i], spec, shared);
    }
  };
  std::vector<std::thread> threads;
  const unsigned n = std::max(1u, std::min<unsigned>(parallel, static_cast<unsigned>(pids.size())));
  for (unsigned t = 1; t < n; ++t) threads.emplace_back(work);
  work();  // this thread takes a share too
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace hotpatch
