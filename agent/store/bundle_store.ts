/**
 * Bundles on this host: `<dir>/<id>/` holds the unpacked bundle and `bundle.json` (what verification
 * returned). An upload goes to a temporary folder inside `<dir>` and is renamed into place only
 * after verifyBundle passed, so a half-written or bad bundle is never visible. Uploads are limited
 * in number at once and, with the bundles stored, in bytes (the quota); a failing disk (ENOSPC, EIO)
 * ends an upload with ENOSPACE or EIO and leaves nothing behind.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { diskError, isFileError } from "../disk_error.js";
import { AgentError } from "../errors.js";
import { treeBytes } from "./disk_usage.js";
import type { UploadHeader, VerifiedBundle } from "./types.js";
import { verifyBundle } from "./verify_bundle.js";

const idRe = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Prefixes of the store's own temporary folders (never bundle ids: those start with a letter or digit). */
const uploadPrefix = ".upload-";
const removingPrefix = ".removing-";

/** Result of staging. */
export interface StageResult {
  /** The stored bundle. */
  bundle: VerifiedBundle;
  /** True when the same bundle (same sha256) was already stored; nothing was written. */
  alreadyStaged: boolean;
}

/** What the store accepts. */
export interface StoreLimits {
  /** Largest upload, bytes (grpc.maxBundleBytes). */
  maxBytes: number;
  /** Most bytes the folder may hold: stored bundles plus uploads in progress (uploads.quotaBytes). */
  quotaBytes: number;
  /** Most uploads at once (uploads.maxConcurrent). */
  maxConcurrent: number;
}

/** Bytes an upload in progress may put in the folder. */
interface Reservation {
  bytes: number;
}

export class BundleStore {
  private readonly uploads = new Set<Reservation>();
  /** Requests running on a bundle id (stage, apply, revert), which DeleteBundle must not pull the files from under. */
  private readonly holds = new Map<string, number>();
  private readonly deleting = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly limits: StoreLimits,
    /** Public keys (PEM files) whose signatures are trusted; when any are given, bundles must be signed. */
    private readonly trustedKeys: string[] = [],
  ) {}

  /** Creates the store folder and removes uploads and deletions a crash left behind. */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(uploadPrefix) || name.startsWith(removingPrefix))
        await rm(path.join(this.dir, name), { recursive: true, force: true });
    }
  }

  /** Checks a header before any byte is accepted. */
  checkHeader(h: UploadHeader): void {
    if (!idRe.test(h.bundleId)) {
      throw new AgentError(
        "EBAD_ARGUMENT",
        `bundle id "${h.bundleId}" is not valid: use 1-128 letters, digits, '.', '-', '_', starting with a letter or digit`,
      );
    }
    if (!/^[0-9a-f]{64}$/.test(h.sha256)) {
      throw new AgentError("EBAD_ARGUMENT", `bundle ${h.bundleId}: header sha256 must be 64 lowercase hex digits`, {
        bundleId: h.bundleId,
      });
    }
    if (!(h.size > 0))
      throw new AgentError("EBAD_ARGUMENT", `bundle ${h.bundleId}: header size must be > 0`, {
        bundleId: h.bundleId,
      });
    if (h.size > this.limits.maxBytes) {
      throw new AgentError(
        "ETOO_LARGE",
        `bundle ${h.bundleId} is ${h.size} bytes; this agent accepts at most ${this.limits.maxBytes} (grpc.maxBundleBytes)`,
        { bundleId: h.bundleId },
      );
    }
  }

  /**
   * Receives an upload, verifies it, lets `accept` refuse it (by throwing; e.g. a target not on the
   * allow-list), and stores it. Nothing is stored when any step fails.
   */
  async stage(
    h: UploadHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal?: AbortSignal,
    accept: (b: VerifiedBundle) => void = () => undefined,
  ): Promise<StageResult> {
    this.checkHeader(h);
    if (this.uploads.size >= this.limits.maxConcurrent) {
      throw new AgentError(
        "ETOO_MANY_UPLOADS",
        `bundle ${h.bundleId}: ${this.uploads.size} uploads are in progress, the most this agent takes at once (uploads.maxConcurrent); retry when one has finished`,
        { bundleId: h.bundleId },
      );
    }
    const slot: Reservation = { bytes: 0 };
    this.uploads.add(slot);
    try {
      await this.reserve(slot, h.size, h.bundleId);
      return await this.receive(h, chunks, slot, signal, accept);
    } catch (err) {
      throw isFileError(err) ? diskError(err, `stage bundle ${h.bundleId}`) : err;
    } finally {
      this.uploads.delete(slot);
    }
  }

  /** Grows an upload's reservation to `bytes`; EQUOTA when the folder would hold more than the quota. */
  private async reserve(slot: Reservation, bytes: number, bundleId: string): Promise<void> {
    const grows = bytes > slot.bytes;
    slot.bytes = bytes;
    if (!grows) return;
    // Reservations first, then the folder: an upload that finishes in between is counted twice, never not at all.
    const reserved = [...this.uploads].reduce((n, r) => n + r.bytes, 0);
    const stored = await treeBytes(this.dir, (name) => name.startsWith(uploadPrefix));
    const quota = this.limits.quotaBytes;
    if (stored + reserved > quota) {
      throw new AgentError(
        "EQUOTA",
        `bundle ${bundleId} needs ${bytes} bytes, but stored bundles hold ${stored} and other uploads in progress ${reserved - bytes} of the ${quota} allowed (uploads.quotaBytes); delete bundles that are no longer needed (DeleteBundle)`,
        { bundleId },
      );
    }
  }

  private async receive(
    h: UploadHeader,
    chunks: AsyncIterable<Uint8Array>,
    slot: Reservation,
    signal: AbortSignal | undefined,
    accept: (b: VerifiedBundle) => void,
  ): Promise<StageResult> {
    const existing = await this.get(h.bundleId);
    const tmp = await mkdtemp(path.join(this.dir, uploadPrefix));
    try {
      const archive = path.join(tmp, "bundle.tar");
      // Plain awaited writes: a disk error is a rejection here, never an 'error' event nobody listens to.
      const out = await open(archive, "wx", 0o600);
      const hash = createHash("sha256");
      let size = 0;
      try {
        for await (const chunk of chunks) {
          signal?.throwIfAborted();
          size += chunk.length;
          if (size > h.size) {
            throw new AgentError(
              "ETOO_LARGE",
              `bundle ${h.bundleId}: the upload is larger than the ${h.size} bytes its header announced`,
              { bundleId: h.bundleId },
            );
          }
          hash.update(chunk);
          for (let done = 0; done < chunk.length; ) done += (await out.write(chunk, done)).bytesWritten;
        }
      } finally {
        await out.close();
      }
      // A call that ended by deadline or cancel is that, not a short upload.
      signal?.throwIfAborted();
      if (size !== h.size) {
        throw new AgentError(
          "EBAD_BUNDLE",
          `bundle ${h.bundleId}: received ${size} bytes, the header announced ${h.size}; the upload was cut short`,
          { bundleId: h.bundleId },
        );
      }
      const sha256 = hash.digest("hex");
      if (existing) {
        if (existing.sha256 === sha256) return { bundle: existing, alreadyStaged: true };
        throw new AgentError(
          "EPRECONDITION",
          `bundle ${h.bundleId} is already staged with different content (sha256 ${existing.sha256}); give the new bundle a new id`,
          { bundleId: h.bundleId },
        );
      }
      const unpacked = path.join(tmp, "bundle");
      await mkdir(unpacked);
      // Once verified, the archive is no longer needed: the folder then holds only the copy.
      const verified = await verifyBundle(
        h.bundleId,
        archive,
        sha256,
        h.sha256,
        unpacked,
        this.trustedKeys,
        signal,
        (bytes) => rm(archive).then(() => this.reserve(slot, bytes, h.bundleId)),
      );
      accept(verified);
      const finalDir = path.join(this.dir, h.bundleId);
      const stored: VerifiedBundle = {
        ...verified,
        soPath: path.join(finalDir, path.relative(unpacked, verified.soPath)),
      };
      await writeFile(path.join(unpacked, "bundle.json"), JSON.stringify(stored, null, 2));
      signal?.throwIfAborted();
      await rename(unpacked, finalDir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
        throw new AgentError("EPRECONDITION", `bundle ${h.bundleId} was staged by another upload meanwhile`, {
          bundleId: h.bundleId,
        });
      });
      return { bundle: stored, alreadyStaged: false };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Runs `work` while holding bundle `id`: DeleteBundle refuses it meanwhile (EBUNDLE_IN_USE). */
  async holding<T>(id: string, work: () => Promise<T>): Promise<T> {
    if (this.deleting.has(id)) throw new AgentError("ENOT_STAGED", `bundle ${id} is being deleted`, { bundleId: id });
    this.holds.set(id, (this.holds.get(id) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const n = (this.holds.get(id) ?? 1) - 1;
      if (n > 0) this.holds.set(id, n);
      else this.holds.delete(id);
    }
  }

  /**
   * Deletes bundle `id` once `check` (which refuses by throwing) passed; no request on the bundle
   * may start meanwhile. The folder leaves the store in one rename. Resolves with the bytes freed.
   */
  async remove(id: string, check: (b: VerifiedBundle) => Promise<void>): Promise<number> {
    if (!idRe.test(id)) throw new AgentError("EBAD_ARGUMENT", `bundle id "${id}" is not valid`, { bundleId: id });
    if (this.holds.has(id) || this.deleting.has(id)) {
      throw new AgentError(
        "EBUNDLE_IN_USE",
        `a request on bundle ${id} is running (stage, apply, revert or delete); retry when it has finished`,
        { bundleId: id },
      );
    }
    this.deleting.add(id);
    try {
      await check(await this.require(id));
      const folder = path.join(this.dir, id);
      const bytes = await treeBytes(folder);
      const gone = path.join(this.dir, `${removingPrefix}${randomUUID()}`);
      await rename(folder, gone);
      await rm(gone, { recursive: true, force: true });
      return bytes;
    } catch (err) {
      throw isFileError(err) ? diskError(err, `delete bundle ${id}`) : err;
    } finally {
      this.deleting.delete(id);
    }
  }

  /** A stored bundle, or null; EIO when its record cannot be read. */
  async get(id: string): Promise<VerifiedBundle | null> {
    if (!idRe.test(id)) return null;
    let text: string;
    try {
      text = await readFile(path.join(this.dir, id, "bundle.json"), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR")
        return null;
      throw diskError(err, `read bundle ${id}`);
    }
    try {
      return JSON.parse(text) as VerifiedBundle;
    } catch {
      return null;
    }
  }

  /** A stored bundle, or ENOT_STAGED naming what to do. */
  async require(id: string): Promise<VerifiedBundle> {
    if (!idRe.test(id)) throw new AgentError("EBAD_ARGUMENT", `bundle id "${id}" is not valid`, { bundleId: id });
    const b = await this.get(id);
    if (!b)
      throw new AgentError("ENOT_STAGED", `bundle ${id} is not staged on this host; stage it first (StageBundle)`, {
        bundleId: id,
      });
    return b;
  }

  /** Ids of every stored bundle. */
  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch((err: unknown) => {
      throw diskError(err, `list the bundles in ${this.dir}`);
    });
    return names.filter((n) => idRe.test(n)).sort();
  }

  /** Folder of a stored bundle (for the agent's own files about it, such as follow rules). */
  folder(id: string): string {
    return path.join(this.dir, id);
  }
}
