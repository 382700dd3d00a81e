/**
 * Bundles on this host: `<dir>/<id>/` holds the unpacked bundle and `bundle.json` (what verification
 * returned). An upload goes to a temporary folder inside `<dir>` and is renamed into place only
 * after verifyBundle passed, so a half-written or bad bundle is never visible.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { finished } from "node:stream/promises";
import { AgentError } from "../errors.js";
import type { UploadHeader, VerifiedBundle } from "./types.js";
import { verifyBundle } from "./verify_bundle.js";

const idRe = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Result of staging. */
export interface StageResult {
  /** The stored bundle. */
  bundle: VerifiedBundle;
  /** True when the same bundle (same sha256) was already stored; nothing was written. */
  alreadyStaged: boolean;
}

export class BundleStore {
  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    /** Public keys (PEM files) whose signatures are trusted; when any are given, bundles must be signed. */
    private readonly trustedKeys: string[] = [],
  ) {}

  /** Creates the store folder and removes uploads a crash left behind. */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(".upload-")) await rm(path.join(this.dir, name), { recursive: true, force: true });
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
    if (h.size > this.maxBytes) {
      throw new AgentError(
        "ETOO_LARGE",
        `bundle ${h.bundleId} is ${h.size} bytes; this agent accepts at most ${this.maxBytes} (grpc.maxBundleBytes)`,
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
    const existing = await this.get(h.bundleId);
    const tmp = await mkdtemp(path.join(this.dir, ".upload-"));
    try {
      const archive = path.join(tmp, "bundle.tar");
      const out = createWriteStream(archive, { mode: 0o600 });
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
          if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
        }
      } finally {
        out.end();
        await finished(out).catch(() => undefined);
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
      const verified = await verifyBundle(h.bundleId, archive, sha256, h.sha256, unpacked, this.trustedKeys, signal);
      accept(verified);
      const finalDir = path.join(this.dir, h.bundleId);
      const stored: VerifiedBundle = {
        ...verified,
        soPath: path.join(finalDir, path.relative(unpacked, verified.soPath)),
      };
      await writeFile(path.join(unpacked, "bundle.json"), JSON.stringify(stored, null, 2));
      signal?.throwIfAborted();
      await rename(unpacked, finalDir);
      return { bundle: stored, alreadyStaged: false };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** A stored bundle, or null. */
  async get(id: string): Promise<VerifiedBundle | null> {
    if (!idRe.test(id)) return null;
    try {
      return JSON.parse(await readFile(path.join(this.dir, id, "bundle.json"), "utf8")) as VerifiedBundle;
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
    const names = await readdir(this.dir);
    return names.filter((n) => idRe.test(n)).sort();
  }

  /** Folder of a stored bundle (for the agent's own files about it, such as follow rules). */
  folder(id: string): string {
    return path.join(this.dir, id);
  }
}
