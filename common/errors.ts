/**
 * The one coded-error base: every part's error class extends `CodedError` with its own documented
 * code union and context shape, and `codeOf` reads the stable code of anything thrown.
 */

/** A failure with a stable `code` (operators and scripts match on it, never on the message), what it was about, and its cause. */
export class CodedError<Code extends string = string, Context extends object = Record<string, unknown>> extends Error {
  override readonly name: string = "CodedError";
  readonly code: Code;
  readonly context: Context;

  constructor(code: Code, message: string, context?: Context, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.context = context ?? ({} as Context);
  }
}

/**
 * The stable code of any thrown value: its own `E…` code when it carries one; EDEADLINE for a
 * timeout signal's reason and ECANCELLED for an abort; otherwise EINTERNAL (a bug of ours).
 */
export function codeOf(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | null | undefined;
  if (typeof e?.code === "string" && /^E[A-Z0-9_]+$/.test(e.code)) return e.code;
  if (e?.name === "TimeoutError") return "EDEADLINE";
  if (e?.name === "AbortError") return "ECANCELLED";
  return "EINTERNAL";
}
