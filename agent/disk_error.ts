/** Failures of the agent's own files (bundle store, audit log) as AgentErrors with stable codes. */
import { AgentError } from "./errors.js";

const noSpace = new Set(["ENOSPC", "EDQUOT", "EFBIG"]);

/** True for an error of a system call on a file (it carries an errno name and the call). */
export function isFileError(err: unknown): err is NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException;
  return typeof e?.code === "string" && typeof e.syscall === "string";
}

/**
 * ENOSPACE for a full disk or quota, EIO for any other failure of a file operation; `doing` says
 * what the agent was doing ("store bundle b1"). An AgentError is returned as it is.
 */
export function diskError(err: unknown, doing: string): AgentError {
  if (err instanceof AgentError) return err;
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e?.code === "string" ? e.code : "EIO";
  const file = e?.path ? ` (${e.path})` : "";
  const full = noSpace.has(errno);
  return new AgentError(
    full ? "ENOSPACE" : "EIO",
    `cannot ${doing}: ${full ? "the disk is full" : "the disk failed"}${file}: ${errno}`,
    { errno, ...(e?.path ? { path: e.path } : {}) },
    { cause: err },
  );
}
