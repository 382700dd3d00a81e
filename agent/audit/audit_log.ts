/** The append-only JSON-lines audit log: one line per change request (who, what, which processes, result). */

import type { FileHandle } from "node:fs/promises";
import { mkdir, open } from "node:fs/promises";
import path from "node:path";

/** One audit record. */
export interface AuditRecord {
  /** Client certificate CN, or "insecure" when the server runs without mTLS. */
  actor: string;
  /** Name the client gave in the request (`requested_by`), when any. */
  requestedBy?: string;
  /** What was asked: "stage", "apply", "revert", "switchover", "auto-apply". */
  action: string;
  /** The request's parameters (bundle id, selector, target role, ...). */
  request: Record<string, unknown>;
  /** Processes concerned, with what happened to each. */
  processes?: { pid: number; outcome: string; errorCode?: string }[];
  /** "ok" or the error code. */
  result: string;
  /** Human-readable detail of a failure. */
  message?: string;
}

export class AuditLog {
  private handle: FileHandle | null = null;
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  /** Opens the log for appending (O_APPEND: lines are never rewritten). */
  async open(): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true });
    this.handle = await open(this.file, "a", 0o600);
  }

  /** Appends one record with a timestamp; writes are serialised so lines never interleave. */
  append(rec: AuditRecord): Promise<void> {
    const line = `${JSON.stringify({ time: new Date().toISOString(), ...rec })}\n`;
    const h = this.handle;
    if (!h) return Promise.reject(new Error("audit log is not open"));
    this.tail = this.tail.then(async () => {
      await h.write(line);
      await h.datasync();
    });
    return this.tail;
  }

  async close(): Promise<void> {
    await this.tail.catch(() => undefined);
    await this.handle?.close();
    this.handle = null;
  }
}
