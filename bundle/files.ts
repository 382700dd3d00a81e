/**
 * Reading the files of a bundle (a directory or a .tar) into memory with size limits, and writing
 * them out again. Tar entries are never extracted by path: only the three known names are read, as
 * bytes, and any other entry (a link, a device, `..`, an absolute path, a duplicate) refuses the tar.
 * A gzip-compressed tar is inflated by us, at most MAX_TAR_BYTES of it, before anything in it is
 * believed; other compressions are refused.
 */
import { constants, createReadStream } from "node:fs";
import { lstat, open, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { create as tarCreate, list as tarList } from "tar";
import { BundleError, throwIfAborted } from "./errors.js";
import { MAX_MANIFEST_BYTES } from "./manifest.js";
import { MAX_SIGNATURE_BYTES } from "./signature.js";

/** Largest patch.so accepted, in bytes. */
export const MAX_SO_BYTES = 64 * 1024 * 1024;
/** Largest .tar bundle accepted, in bytes; also the most a compressed .tar may inflate to. */
export const MAX_TAR_BYTES = MAX_SO_BYTES + 1024 * 1024;

const gzipMagic = Buffer.from([0x1f, 0x8b]);
const zstdMagic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** The names a bundle is made of. */
export const MANIFEST_FILE = "manifest.json";
export const SO_FILE = "patch.so";
export const SIGNATURE_FILE = "manifest.sig";

const limits: Record<string, number> = {
  [MANIFEST_FILE]: MAX_MANIFEST_BYTES,
  [SO_FILE]: MAX_SO_BYTES,
  [SIGNATURE_FILE]: MAX_SIGNATURE_BYTES,
};

/** The raw bytes of a bundle's files. */
export interface BundleFiles {
  /** manifest.json as stored. */
  manifest: Buffer;
  /** patch.so as stored. */
  so: Buffer;
  /** manifest.sig as stored, or null when absent. */
  signature: Buffer | null;
}

function tooLarge(origin: string, name: string, size: number): BundleError {
  return new BundleError("EBAD_BUNDLE", `${origin}: ${name} is ${size} bytes, more than the ${limits[name]} allowed`, {
    path: origin,
    field: name,
  });
}

async function readRegularFile(dir: string, name: string, signal?: AbortSignal): Promise<Buffer | null> {
  const file = path.join(dir, name);
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new BundleError("EIO", `cannot read ${file}: ${(err as Error).message}`, { path: file }, { cause: err });
  }
  if (!st.isFile()) {
    throw new BundleError("EBAD_BUNDLE", `${file} must be a regular file (links and other kinds are refused)`, {
      path: dir,
      field: name,
    });
  }
  const limit = limits[name] ?? 0;
  if (st.size > limit) throw tooLarge(dir, name, st.size);
  // O_NOFOLLOW: the file checked above could have been swapped for a link since.
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch((err: unknown) => {
    throw new BundleError("EIO", `cannot open ${file}: ${(err as Error).message}`, { path: file }, { cause: err });
  });
  try {
    const bytes = await handle.readFile(signal ? { signal } : {});
    if (bytes.length > limit) throw tooLarge(dir, name, bytes.length);
    return bytes;
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throwIfAborted(signal);
    throw new BundleError("EIO", `cannot read ${file}: ${(err as Error).message}`, { path: file }, { cause: err });
  } finally {
    await handle.close();
  }
}

async function readDirectory(dir: string, signal?: AbortSignal): Promise<BundleFiles> {
  const manifest = await readRegularFile(dir, MANIFEST_FILE, signal);
  const so = await readRegularFile(dir, SO_FILE, signal);
  const signature = await readRegularFile(dir, SIGNATURE_FILE, signal);
  return complete(dir, { manifest, so, signature });
}

function complete(
  origin: string,
  f: { manifest: Buffer | null; so: Buffer | null; signature: Buffer | null },
): BundleFiles {
  for (const [name, bytes] of [
    [MANIFEST_FILE, f.manifest],
    [SO_FILE, f.so],
  ] as const) {
    if (bytes === null) {
      throw new BundleError(
        "EBAD_BUNDLE",
        `${origin}: ${name} is missing (a bundle holds manifest.json and patch.so)`,
        {
          path: origin,
          field: name,
        },
      );
    }
  }
  return { manifest: f.manifest as Buffer, so: f.so as Buffer, signature: f.signature };
}

/** The first bytes of a file (fewer when it is shorter). */
async function head(file: string, n: number): Promise<Buffer> {
  const h = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await h.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await h.close();
  }
}

/**
 * The tar's bytes, counted: more than MAX_TAR_BYTES (a gzip bomb) ends the read at once. The
 * inflated stream must not be compressed again, or node-tar's parser would inflate it a second time,
 * without our cap.
 */
function capped(tarPath: string, compressed: boolean, stop: (err: BundleError) => BundleError) {
  return async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    let total = 0;
    for await (const chunk of source) {
      if (
        total === 0 &&
        compressed &&
        (chunk.subarray(0, 2).equals(gzipMagic) || chunk.subarray(0, 4).equals(zstdMagic))
      )
        throw stop(
          new BundleError("EBAD_BUNDLE", `${tarPath}: a compressed tar inside a compressed tar is refused`, {
            path: tarPath,
          }),
        );
      total += chunk.length;
      if (total > MAX_TAR_BYTES)
        throw stop(
          new BundleError(
            "EBAD_BUNDLE",
            `${tarPath} inflates to more than the ${MAX_TAR_BYTES} bytes a bundle may hold; it was refused before anything in it was checked`,
            { path: tarPath },
          ),
        );
      yield chunk;
    }
  };
}

async function readTar(tarPath: string, size: number, signal?: AbortSignal): Promise<BundleFiles> {
  if (size > MAX_TAR_BYTES) {
    throw new BundleError("EBAD_BUNDLE", `${tarPath} is ${size} bytes, more than the ${MAX_TAR_BYTES} allowed`, {
      path: tarPath,
    });
  }
  const found = new Map<string, Buffer>();
  let refusal: BundleError | null = null;
  // The pipeline may end with the AbortError of a stage it destroyed rather than with our reason.
  let stopped: BundleError | null = null;
  const refuse = (message: string, field?: string) => {
    refusal ??= new BundleError("EBAD_BUNDLE", `${tarPath}: ${message}`, {
      path: tarPath,
      ...(field ? { field } : {}),
    });
  };
  try {
    const magic = await head(tarPath, 4);
    if (magic.equals(zstdMagic))
      throw new BundleError("EBAD_BUNDLE", `${tarPath} is zstd-compressed; give a .tar or a gzip-compressed .tar`, {
        path: tarPath,
      });
    const gzip = magic.subarray(0, 2).equals(gzipMagic);
    // zstd and brotli off: the parser gets only plain tar bytes, so its own (uncapped) inflating never starts.
    const parser = tarList({
      strict: true,
      zstd: false,
      brotli: false,
      onReadEntry(entry) {
        if (refusal) return;
        const name = entry.path.startsWith("./") ? entry.path.slice(2) : entry.path;
        if (entry.type === "Directory" && (name === "" || name === "./" || name === ".")) return;
        const limit = limits[name];
        if (limit === undefined)
          return refuse(
            `unexpected entry ${JSON.stringify(entry.path).slice(0, 200)} (a bundle holds only manifest.json, patch.so, manifest.sig)`,
          );
        if (entry.type !== "File" && entry.type !== "OldFile")
          return refuse(`${name} is a ${entry.type}, not a regular file`, name);
        if (found.has(name)) return refuse(`${name} appears twice`, name);
        if ((entry.size ?? 0) > limit)
          return refuse(`${name} is ${entry.size} bytes, more than the ${limit} allowed`, name);
        const chunks: Buffer[] = [];
        let total = 0;
        entry.on("data", (chunk: Buffer) => {
          total += chunk.length;
          if (total <= limit) chunks.push(chunk);
        });
        entry.on("end", () => {
          if (total > limit) refuse(`${name} is larger than the ${limit} allowed`, name);
          else found.set(name, Buffer.concat(chunks));
        });
      },
    });
    const parsed = new Promise<void>((resolve, reject) => {
      parser.on("error", reject);
      parser.on("end", () => resolve());
    });
    parsed.catch(() => undefined);
    await pipeline(
      createReadStream(tarPath, signal ? { signal } : {}),
      gzip ? createGunzip() : new PassThrough(),
      capped(tarPath, gzip, (err) => {
        stopped = err;
        return err;
      }),
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          if (!parser.write(chunk)) await Promise.race([new Promise((r) => parser.once("drain", r)), parsed]);
        }
        parser.end();
      },
    );
    await parsed;
  } catch (err) {
    throwIfAborted(signal);
    if (stopped) throw stopped;
    if (err instanceof BundleError) throw err;
    throw new BundleError(
      "EBAD_BUNDLE",
      `${tarPath} is not a readable tar: ${(err as Error).message}`,
      { path: tarPath },
      { cause: err },
    );
  }
  throwIfAborted(signal);
  if (refusal) throw refusal;
  return complete(tarPath, {
    manifest: found.get(MANIFEST_FILE) ?? null,
    so: found.get(SO_FILE) ?? null,
    signature: found.get(SIGNATURE_FILE) ?? null,
  });
}

/** Reads a bundle's files from a directory or a .tar (anything that is a regular file is read as a tar). */
export async function readBundleFiles(origin: string, signal?: AbortSignal): Promise<BundleFiles> {
  throwIfAborted(signal);
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(origin);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = code === "ENOENT" ? `${origin} does not exist` : `cannot read ${origin}: ${(err as Error).message}`;
    throw new BundleError(code === "ENOENT" ? "EBAD_BUNDLE" : "EIO", message, { path: origin }, { cause: err });
  }
  if (st.isDirectory()) return readDirectory(origin, signal);
  if (st.isFile()) return readTar(origin, st.size, signal);
  throw new BundleError("EBAD_BUNDLE", `${origin} is neither a bundle directory nor a .tar file`, { path: origin });
}

/** Writes a bundle's files into an existing directory (patch.so and the manifest readable by the target's user). */
export async function writeBundleFiles(dir: string, files: BundleFiles): Promise<void> {
  await writeFile(path.join(dir, MANIFEST_FILE), files.manifest, { mode: 0o644, flag: "wx" });
  await writeFile(path.join(dir, SO_FILE), files.so, { mode: 0o644, flag: "wx" });
  if (files.signature) await writeFile(path.join(dir, SIGNATURE_FILE), files.signature, { mode: 0o644, flag: "wx" });
}

/**
 * Packs a bundle directory into a .tar holding exactly its manifest.json, patch.so and manifest.sig
 * (when present), with no owner names or times, so the same bundle packs to the same bytes.
 */
export async function packBundle(dir: string, tarPath: string): Promise<void> {
  const files = await readDirectory(dir);
  const names = [MANIFEST_FILE, SO_FILE, ...(files.signature ? [SIGNATURE_FILE] : [])];
  const tmp = `${tarPath}.tmp-${process.pid}-${Date.now()}`;
  try {
    await tarCreate({ file: tmp, cwd: dir, portable: true, noMtime: true, noDirRecurse: true, follow: false }, names);
    await rename(tmp, tarPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new BundleError(
      "EIO",
      `cannot write ${tarPath}: ${(err as Error).message}`,
      { path: tarPath },
      { cause: err },
    );
  }
}
