/** Stable codes of engine failures. Operators and scripts match on these, never on messages. */
export type EngineErrorCode =
  /** The ELF file could not be opened (missing, unreadable). */
  | "EELF_OPEN"
  /** The file is not an ELF file, or is corrupt or truncated. */
  | "EBAD_ELF"
  /** No process has that PID. */
  | "ENOPROCESS"
  /** The process exists but its /proc entries may not be read by this user. */
  | "EPERM_PROC"
  /** The kernel's process-event connector refused us (needs root or CAP_NET_ADMIN). */
  | "EPERM_PROC_EVENTS"
  /** A failure the engine did not expect; the message says what happened. */
  | "EINTERNAL";

const knownCodes = new Set<string>([
  "EELF_OPEN",
  "EBAD_ELF",
  "ENOPROCESS",
  "EPERM_PROC",
  "EPERM_PROC_EVENTS",
  "EINTERNAL",
]);

/** Context attached to an engine error: what was being operated on. */
export interface EngineErrorContext {
  /** Target process, when there was one. */
  pid?: number;
  /** File involved, when there was one. */
  path?: string;
}

/** A failure of the native engine, with a stable code and what it was working on. */
export class EngineError extends Error {
  override readonly name = "EngineError";
  readonly code: EngineErrorCode;
  readonly context: EngineErrorContext;

  constructor(code: EngineErrorCode, message: string, context: EngineErrorContext = {}, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.context = context;
  }

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
