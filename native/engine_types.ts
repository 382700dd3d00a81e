/** Pure types of the patch engine's TypeScript face. */

/**
 * How strictly activation checks that no thread is in a replaced function.
 * `strict`: no thread executes in, or will return into, the old function.
 * `entry`: only the bytes the jump overwrites must be free; old activations finish in old code.
 */
export type Consistency = "strict" | "entry";

/** One function a patch replaces. */
export interface PatchFunctionSpec {
  /** Old function in the target; a static name may be qualified by source file: `file.c:name`. */
  symbol: string;
  /** Function in the patch's shared object that replaces it. */
  replacement: string;
  /** Consistency for this function; defaults to the operation's, then `strict`. */
  consistency?: Consistency;
}

/** A patch to load. */
export interface PatchSpec {
  /** Patch id, unique within a process (at most 63 bytes). */
  id: string;
  /** Absolute path of the patch's shared object. */
  soPath: string;
  /** Functions it replaces (1 to 32). */
  functions: PatchFunctionSpec[];
  /**
   * `mmap` (default): the engine maps and relocates the patch itself, and no code of the target runs
   * (a C++ patch's unwind tables are registered with the target's unwinder). `dlopen`: the target's
   * own dynamic loader loads it, called only while no thread is inside the loader or the allocator.
   */
  loader?: "mmap" | "dlopen";
}

/** Options of every engine operation. */
export interface OpOptions {
  /** Default consistency for functions that do not name one. */
  consistency?: Consistency;
  /** How long a `strict` check keeps retrying before EUNSAFE_TIMEOUT, ms (default 5000). */
  safetyTimeoutMs?: number;
  /** Stops the retries; the operation rejects with ECANCELLED and leaves the target as it was. */
  signal?: AbortSignal;
  /** Where separate debug info is looked up by build-id (default `/usr/lib/debug`). */
  debugDirs?: string[];
  /**
   * Where a load places the patch: `near` (default) within ±2 GiB of the first old function, so
   * that 5-byte jumps reach it (falling back to anywhere when there is no room); `far` anywhere.
   * Either way a replacement beyond ±2 GiB is reached through a near trampoline page.
   */
  placement?: "near" | "far";
}

/** A replaced function as recorded in the target. */
export interface PatchedFunction {
  /** Symbol as given in the spec. */
  symbol: string;
  /** Entry of the old function. */
  address: bigint;
  /** Size of the old function in bytes. */
  size: bigint;
  /** Entry of the replacement. */
  replacement: bigint;
  /** Where the jump is written (after an `endbr64`, if the function starts with one). */
  site: bigint;
  /**
   * `rel32`: 5-byte E9 jump to the replacement; `trampoline`: 5-byte E9 jump to a slot of a page
   * placed within ±2 GiB that jumps on (the replacement is farther); `abs64`: 14-byte absolute
   * jump (no page could be placed near, and the function has room).
   */
  jump: "rel32" | "trampoline" | "abs64";
  /** The trampoline slot the jump goes through, or null. */
  trampoline: bigint | null;
  /** Consistency the function was loaded with. */
  consistency: Consistency;
  /** Bytes at `site` before activation, hex. */
  originalBytes: string;
  /** Bytes activation writes at `site`, hex. */
  jumpBytes: string;
}

/** States a patch can be in inside a process (an unloaded patch is simply absent). */
export type PatchState = "loaded" | "active" | "inactive";

/** A patch as the target's own descriptor records it. */
export interface PatchRecord {
  /** Patch id. */
  id: string;
  /** Current state. */
  state: PatchState;
  /** What the target mapped the patch from: its memfd (`/memfd:hotpatch-patch-ID`), or for the dlopen loader the `/proc/self/fd/N` name its ld.so keeps. */
  soPath: string;
  /** First address of the patch's mappings. */
  base: bigint;
  /** Bytes of address space the patch covers. */
  span: bigint;
  /** Load order in this process (stacked patches have higher numbers). */
  order: number;
  /** Which loader put it there. */
  loader: "mmap" | "dlopen";
  /** Functions it replaces. */
  functions: PatchedFunction[];
}

/** Result of one engine operation on one process. */
export interface OpResult {
  /** The process. */
  pid: number;
  /** The patch after the operation. */
  patch: PatchRecord;
  /** Longest single stop of the target during the operation, µs (0 when nothing was done). */
  pauseUs: number;
  /** Stops it took (`strict` checks retry). */
  attempts: number;
  /** False when the process was already in the asked state. */
  changed: boolean;
}

/** What applying a patch did in one process of a batch. */
export type ApplyOutcome =
  /** The patch was loaded (if needed) and activated. */
  | { pid: number; outcome: "done"; patch: PatchRecord; pauseUs: number; attempts: number }
  /** It was already active: nothing was done. */
  | { pid: number; outcome: "already"; patch: PatchRecord; pauseUs: number; attempts: number }
  /** It failed; the process was left as it was (a patch this call loaded was unloaded again). */
  | { pid: number; outcome: "failed"; code: string; message: string };
