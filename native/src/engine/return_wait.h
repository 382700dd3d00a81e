// Waiting for a busy function to return (strict consistency), inside one transaction.
//
// For every thread in the way, the return address of its outermost busy frame is replaced by the
// address of a landing pad: a few instructions in a page we map into the target that save the
// registers they use, send the thread itself a signal whose default action is to ignore it (one
// the target neither catches nor blocks), restore the registers and jump to the original return
// address. While we trace the thread the signal stops it right there, outside the function: we
// stop the others, check again and switch. Without a tracer (our process died) the signal is
// discarded and the thread goes on where it would have: nothing left behind can harm the target.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <vector>

#include "../proc_maps.h"
#include "../ptrace/stopped_process.h"
#include "safety.h"

namespace hotpatch {

// Checks `check` in `stopped`; when no thread is in the way, runs `do_switch` (still stopped) and
// returns nullopt. When threads are in the way, `may_wait` is set and each can wait on a landing
// pad, lets the target run until one lands, and checks again, until free or `deadline`; otherwise,
// or at the deadline, returns the conflict (every hijacked return address restored, the pads
// unmapped). Callers pass may_wait = false on a first stop: most busy functions are short and
// gone by a second short stop, which costs less than mapping pads. A wait also ends (with the
// conflict) soon after `cancelled` becomes non-zero.
std::optional<Conflict> SwitchWhenFree(StoppedProcess& stopped, std::vector<Mapping>& maps, ExactCheck& check,
                                       uint64_t stub, Clock::time_point deadline, bool may_wait,
                                       const std::atomic<int32_t>* cancelled, const std::function<void()>& do_switch);

}  // namespace hotpatch
