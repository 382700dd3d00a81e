import { CodedError } from "../common/index.js";

/** Stable codes of engine failures. Operators and scripts match on these, never on messages. */
export const engineErrorCodes = [
  /** The ELF file could not be opened (missing, unreadable). */
  "EELF_OPEN",
  /** The file is not an ELF file for this machine, or is corrupt or truncated. */
  "EBAD_ELF",
  /** No process has that PID (in this PID namespace). */
  "ENOPROCESS",
  /** The process has exited and waits to be reaped. */
  "EZOMBIE",
  /** The process exited during the operation. */
  "ETARGET_EXITED",
  /** Not permitted to trace the process (no CAP_SYS_PTRACE, YAMA ptrace_scope). */
  "EPERM_PTRACE",
  /** The process is already traced by another tracer (a debugger). */
  "ETRACED",
  /** Some thread would not stop in time (uninterruptible sleep). */
  "ESTOP_TIMEOUT",
  /** A thread stayed in, or due to return into, the code to rewrite until the deadline. */
  "EUNSAFE_TIMEOUT",
  /** The caller cancelled the operation; the target was left as it was. */
  "ECANCELLED",
  /** A symbol was found neither in the target nor in the patch. */
  "ENOSYMBOL",
  /** A static name exists in several source files; qualify it as `file.c:name`. */
  "EAMBIGUOUS_SYMBOL",
  /** The old function is shorter than the jump that must be written over it. */
  "EFUNC_TOO_SHORT",
  /** The patch has a relocation type the mmap loader does not apply. */
  "EUNSUPPORTED_RELOC",
  /** The patch uses a feature the loader does not support (TLS, too many segments). */
  "EUNSUPPORTED_PATCH",
  /** The process carries no patch with that id. */
  "ENOPATCH",
  /** The process already carries a patch with that id. */
  "EPATCH_EXISTS",
  /** The patch is active; deactivate it first. */
  "EPATCH_ACTIVE",
  /** Another patch was stacked on this one; remove that one first. */
  "EPATCH_IN_USE",
  /** A later patch sits on top of this one on the same function; revert that first. */
  "EREVERT_ORDER",
  /** The bytes to replace or restore are not what the engine expects (someone else changed them). */
  "ECODE_CHANGED",
  /** No free address range for the patch. */
  "ENOSPACE",
  /** The patch could not be made visible inside the target's mount namespace. */
  "EMOUNT_NS",
  /** The target has no dynamic loader to dlopen a patch with (a static program). */
  "EUNSUPPORTED_LOADER",
  /** The target's dynamic loader refused the patch (dlerror's message says why). */
  "EDLOPEN",
  /** The target's seccomp filter would refuse (or punish) a call the engine must run inside it. */
  "ESECCOMP",
  /** A system call the engine ran inside the target failed. */
  "EINJECT",
  /** Reading or writing the target's memory failed. */
  "EMEMORY",
  /** The target's hotpatch-state mapping is not in a format this version reads. */
  "EBAD_DESCRIPTOR",
  /** The process carries the maximum number of patches. */
  "ETOO_MANY_PATCHES",
  /** An argument is out of range (id too long, no functions, unreadable patch file). */
  "EBAD_ARGUMENT",
  /** The kernel's process-event connector refused us (needs root or CAP_NET_ADMIN). */
  "EPERM_PROC_EVENTS",
  /** A failure the engine did not expect; the message says what happened. */
  "EINTERNAL",
] as const;

export type EngineErrorCode = (typeof engineErrorCodes)[number];

const knownCodes = new Set<string>(engineErrorCodes);

/** Context attached to an engine error: what was being operated on. */
export interface EngineErrorContext {
  /** Target process, when there was one. */
  pid?: number;
  /** File involved, when there was one. */
  path?: string;
}

/** A failure of the native engine, with a stable code and what it was working on. */
export class EngineError extends CodedError<EngineErrorCode, EngineErrorContext> {
  override readonly name = "EngineError";

  /** Wraps a rejection of the addon (an Error with a `code` string) into an EngineError. */
  static from(err: unknown, context: EngineErrorContext = {}): EngineError {
    if (err instanceof EngineError) return err;
    const raw = err as { code?: unknown; message?: unknown };
    const code =
      typeof raw?.code === "string" && knownCodes.has(raw.code) ? (raw.code as EngineErrorCode) : "EINTERNAL";
    const message = typeof raw?.message === "string" ? raw.message : String(err);
    return new EngineError(code, message, context, { cause: err });
  }
}
