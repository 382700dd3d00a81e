/**
 * The append-only JSON-lines audit log: one line per change request (who, what, which processes,
 * result). A record is written whole or not at all: the full line in one write (the rest retried
 * after a short one), and after a failed write the file is cut back to where the record began. A
 * record the disk refused stays queued in memory, in order, and is written as soon as the disk takes
 * it again (retried every `retryMs` and before every new record), so one ENOSPC never stops the log.
 */

import type { FileHandle } from "node:fs/promises";
import { mkdir, open } from "node:fs/promises";
import path from "node:path";
import type { AuditFsync } from "../config/types.js";
import { diskError } from "../disk_error.js";
import { AgentError } from "../errors.js";

/** One audit record. */
export interface AuditRecord {
  /** Client certificate CN, or "insecure" when the server runs without mTLS. */
  actor: string;
  /** Name the client gave in the request (`requested_by`), when any. */
  requestedBy?: string;
  /** What was asked: "stage", "delete", "apply", "revert", "switchover", "auto-apply". */
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

/** How the log syncs and how much it keeps while the disk refuses records. */
export interface AuditOptions {
  /** always: fdatasync before a record counts as written; interval: every fsyncIntervalMs; never: the kernel's writeback. */
  fsync: AuditFsync;
  fsyncIntervalMs: number;
  /** How often queued records are tried again while no new record comes. */
  retryMs?: number;
  /** Most bytes of queued records kept; the oldest are dropped beyond it. */
  maxPendingBytes?: number;
  /** Told about every failed write or sync. */
  onFailure?: (err: AgentError) => void;
}

/** The log's health, for Status and metrics. */
export interface AuditHealth {
  /** Failure of the last write or sync, or null when the last one succeeded. */
  failure: AgentError | null;
  /** Records waiting for the disk. */
  pending: number;
  /** Records dropped since the log was opened because too many were waiting. */
  dropped: number;
}

interface Queued {
  line: Buffer;
  /** The append() still waiting for this record, if any. */
  waiter: { resolve(): void; reject(err: AgentError): void } | null;
}

export class AuditLog {
  private handle: FileHandle | null = null;
  private readonly queue: Queued[] = [];
  private queuedBytes = 0;
  private flushing: Promise<void> | null = null;
  private failure: AgentError | null = null;
  private dropped = 0;
  /** Bytes written since the last fdatasync (fsync interval/never). */
  private unsynced = false;
  /** The end of the file may hold part of a record (a cut-back failed): repair before writing. */
  private tailSuspect = true;
  private retryTimer: NodeJS.Timeout | null = null;
  private syncTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly file: string,
    private readonly opts: AuditOptions = { fsync: "always", fsyncIntervalMs: 1000 },
  ) {}

  /** Opens the log for appending (O_APPEND) and removes an incomplete last line a crash left behind. */
  async open(): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true });
    this.handle = await open(this.file, "a+", 0o600);
    await this.repairTail();
    if (this.opts.fsync === "interval") {
      this.syncTimer = setInterval(() => void this.sync(), this.opts.fsyncIntervalMs);
      this.syncTimer.unref();
    }
  }

  /** Health of the log right now. */
  health(): AuditHealth {
    return { failure: this.failure, pending: this.queue.length, dropped: this.dropped };
  }

  /**
   * Queues one record with a timestamp and writes the queue in order. Resolves once this record is
   * written (and synced with fsync always); rejects with ENOSPACE or EIO when the disk refused it,
   * in which case it stays queued and is written later.
   */
  append(rec: AuditRecord): Promise<void> {
    const line = Buffer.from(`${JSON.stringify({ time: new Date().toISOString(), ...rec })}\n`);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line, waiter: { resolve, reject } });
      this.queuedBytes += line.length;
      this.dropOldest();
      void this.flush();
    });
  }

  async close(): Promise<void> {
    for (const t of [this.retryTimer, this.syncTimer]) if (t) clearTimeout(t);
    this.retryTimer = this.syncTimer = null;
    await this.flush();
    await this.sync();
    await this.handle?.close();
    this.handle = null;
  }

  private dropOldest(): void {
    const max = this.opts.maxPendingBytes ?? 8 * 1024 * 1024;
    while (this.queuedBytes > max && this.queue.length > 1) {
      const q = this.queue.shift() as Queued;
      this.queuedBytes -= q.line.length;
      this.dropped++;
      q.waiter?.reject(
        new AgentError("ENOSPACE", `audit record dropped: more than ${max} bytes of records were waiting for the disk`),
      );
    }
  }

  /** Writes queued records in order until the queue is empty or the disk refuses one. */
  private flush(): Promise<void> {
    this.flushing ??= this.drain().finally(() => {
      this.flushing = null;
      // A record queued while the last write was settling; after a failure the retry timer takes it.
      if (!this.failure && this.queue.length > 0 && this.handle) void this.flush();
    });
    return this.flushing;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && this.handle) {
      const q = this.queue[0] as Queued;
      try {
        await this.writeWhole(q.line);
      } catch (err) {
        this.failed(err as AgentError);
        return;
      }
      this.queue.shift();
      this.queuedBytes -= q.line.length;
      this.failure = null;
      q.waiter?.resolve();
    }
  }

  /** Tells every waiting append and schedules a retry; the records stay queued. */
  private failed(err: AgentError): void {
    this.failure = err;
    this.opts.onFailure?.(err);
    for (const q of this.queue) {
      q.waiter?.reject(err);
      q.waiter = null;
    }
    if (!this.retryTimer && this.handle) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        void this.flush();
      }, this.opts.retryMs ?? 1000);
      this.retryTimer.unref();
    }
  }

  /** One record, whole or not at all. */
  private async writeWhole(line: Buffer): Promise<void> {
    const h = this.handle as FileHandle;
    if (this.tailSuspect) await this.repairTail();
    let start: number;
    try {
      start = (await h.stat()).size;
    } catch (err) {
      throw diskError(err, `append to the audit log ${this.file}`);
    }
    try {
      for (let done = 0; done < line.length; ) {
        const { bytesWritten } = await h.write(line, done, line.length - done);
        done += bytesWritten;
      }
      if (this.opts.fsync === "always") await h.datasync();
      else this.unsynced = true;
    } catch (err) {
      // What reached the file (part of the line, or a whole line whose sync failed) is cut off.
      await h.truncate(start).catch(() => {
        this.tailSuspect = true;
      });
      throw diskError(err, `append to the audit log ${this.file}`);
    }
  }

  /** Cuts the file back to its last complete line (after a crash or a failed cut-back). */
  private async repairTail(): Promise<void> {
    const h = this.handle as FileHandle;
    try {
      let end = (await h.stat()).size;
      const buf = Buffer.alloc(64 * 1024);
      let keep = 0;
      while (end > 0) {
        const from = Math.max(0, end - buf.length);
        const { bytesRead } = await h.read(buf, 0, end - from, from);
        const nl = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
        if (nl >= 0) {
          keep = from + nl + 1;
          break;
        }
        end = from;
      }
      const size = (await h.stat()).size;
      if (keep < size) await h.truncate(keep);
      this.tailSuspect = false;
    } catch (err) {
      throw diskError(err, `repair the end of the audit log ${this.file}`);
    }
  }

  /** fdatasync for fsync interval/never; a failure is reported, the records stay in the file. */
  private async sync(): Promise<void> {
    if (!this.unsynced || !this.handle) return;
    this.unsynced = false;
    try {
      await this.handle.datasync();
    } catch (err) {
      this.failed(diskError(err, `sync the audit log ${this.file}`));
    }
  }
}
