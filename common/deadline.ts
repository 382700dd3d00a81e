/**
 * Deadlines as abort signals. Node 20 can garbage-collect an `AbortSignal.timeout()` that only an
 * `AbortSignal.any()` refers to, and the composite then never fires (even while it is held and has
 * listeners); so a deadline here is a plain timer and controller, freed by `dispose()`.
 */

/**
 * Calls `fn` once the I/O that became ready meanwhile has been handled. A process held up past a
 * deadline (a GC pause, a starved CPU) runs its due timers before it reads what its sockets received
 * during the stall, so a deadline judged right in its timer can miss an answer that came in time:
 * one setImmediate lets the event loop's poll phase run first. Returns a function that cancels it.
 */
export function afterPendingIo(fn: () => void): () => void {
  const t = setImmediate(fn);
  return () => clearImmediate(t);
}

/** A signal that aborts at a deadline or with any of its parents. */
export interface Deadline {
  /** Aborts `ms` after creation (reason: a DOMException named "TimeoutError", as AbortSignal.timeout gives) or when a parent does (with its reason). */
  signal: AbortSignal;
  /** Clears the timer and the listeners on the parents; call it when the work is over. */
  dispose(): void;
}

/** A deadline `ms` from now (none when `ms` is Infinity) that also follows every signal in `parents`. */
export function deadlineSignal(ms: number, ...parents: (AbortSignal | undefined)[]): Deadline {
  const ctl = new AbortController();
  let cancelLate: () => void = () => undefined;
  // Work whose answer arrived before the deadline, but was not read yet, is not cut off.
  const timer = Number.isFinite(ms)
    ? setTimeout(
        () => {
          cancelLate = afterPendingIo(() =>
            ctl.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
          );
        },
        Math.max(0, ms),
      )
    : undefined;
  // Like AbortSignal.timeout, the deadline alone does not keep the process running.
  timer?.unref();
  const unlink: (() => void)[] = [];
  for (const p of parents) {
    if (!p) continue;
    if (p.aborted) {
      ctl.abort(p.reason);
      break;
    }
    const follow = () => ctl.abort(p.reason);
    p.addEventListener("abort", follow, { once: true });
    unlink.push(() => p.removeEventListener("abort", follow));
  }
  return {
    signal: ctl.signal,
    dispose() {
      clearTimeout(timer);
      cancelLate();
      for (const u of unlink.splice(0)) u();
    },
  };
}
