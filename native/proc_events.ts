/**
 * New-process detection from the kernel's process-event connector: the agent learns about every
 * exec at once (no polling), which is what lets it patch a new process within milliseconds.
 * Needs root or CAP_NET_ADMIN. Built as its own addon, native/build/Release/hotpatch_proc_events.node.
 */
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { EngineError } from "./errors.js";

/** One exec seen by the kernel. */
export interface ExecEvent {
  /** The process that exec'd (its thread-group id). */
  pid: number;
  /** When it exec'd: CLOCK_MONOTONIC milliseconds, comparable with monotonicMs(). */
  execMonoMs: number;
}

/** A running watch; stop() ends it (and its reader thread) and is safe to call twice. */
export interface ExecWatcher {
  stop(): void;
}

interface ProcEventsAddon {
  ExecWatcher: new (cb: (e: ExecEvent) => void) => ExecWatcher;
  monotonicMs(): number;
}

function addonPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = path.basename(path.dirname(here)) === "dist" ? path.resolve(here, "../..") : path.resolve(here, "..");
  return path.join(root, "native/build/Release/hotpatch_proc_events.node");
}

let loaded: ProcEventsAddon | null = null;
function addon(): ProcEventsAddon {
  loaded ??= createRequire(import.meta.url)(addonPath()) as ProcEventsAddon;
  return loaded;
}

/** Calls `onExec` for every exec on the host until stop(). Throws EngineError EPERM_PROC_EVENTS without the privilege. */
export function watchExecs(onExec: (e: ExecEvent) => void): ExecWatcher {
  try {
    return new (addon().ExecWatcher)(onExec);
  } catch (err) {
    throw EngineError.from(err);
  }
}

/** CLOCK_MONOTONIC now, milliseconds (the clock of ExecEvent.execMonoMs). */
export function monotonicMs(): number {
  return addon().monotonicMs();
}
