/**
 * The bundle as the controller uploads it: the bytes of a .tar holding manifest.json, patch.so and
 * manifest.sig (when present), its sha256 and the bundle id from the manifest. A directory is packed
 * in memory the way bundle/'s packBundle packs it (no owners, no times), so the same bundle always
 * gives the same bytes. The agent verifies the contents; the controller only needs the id.
 */
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { create as tarCreate, list as tarList } from "tar";
import type { UploadBundle } from "../agents/index.js";
import { RolloutError } from "./errors.js";

/** A bundle ready to upload. */
export type BundleArchive = UploadBundle;

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function idFromManifest(text: string, where: string): string {
  let id: unknown;
  try {
    id = (JSON.parse(text) as { id?: unknown }).id;
  } catch (cause) {
    throw new RolloutError("EBUNDLE_READ", `${where}: manifest.json is not JSON`, { where }, { cause });
  }
  if (typeof id !== "string" || !ID_PATTERN.test(id)) {
    throw new RolloutError("EBUNDLE_READ", `${where}: manifest.json has no valid id`, { where });
  }
  return id;
}

async function packDirectory(dir: string): Promise<Buffer> {
  const names = ["manifest.json", "patch.so"];
  if (await stat(path.join(dir, "manifest.sig")).catch(() => null)) names.push("manifest.sig");
  const chunks: Buffer[] = [];
  const stream = tarCreate({ cwd: dir, portable: true, noMtime: true, noDirRecurse: true, follow: false }, names);
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function manifestFromTar(file: string): Promise<string> {
  let text: string | null = null;
  await tarList({
    file,
    onReadEntry: (entry) => {
      if (entry.path.replace(/^\.\//, "") !== "manifest.json") {
        entry.resume();
        return;
      }
      const parts: Buffer[] = [];
      entry.on("data", (c: Buffer) => parts.push(c));
      entry.on("end", () => {
        text = Buffer.concat(parts).toString("utf8");
      });
    },
  });
  if (text === null) throw new RolloutError("EBUNDLE_READ", `${file}: no manifest.json in the archive`, { file });
  return text;
}

/** Reads a bundle directory or .tar. */
export async function readBundleArchive(where: string): Promise<BundleArchive> {
  try {
    const st = await stat(where);
    let bytes: Buffer;
    let id: string;
    if (st.isDirectory()) {
      id = idFromManifest(await readFile(path.join(where, "manifest.json"), "utf8"), where);
      bytes = await packDirectory(where);
    } else {
      id = idFromManifest(await manifestFromTar(where), where);
      bytes = await readFile(where);
    }
    return { id, bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
  } catch (cause) {
    if (cause instanceof RolloutError) throw cause;
    throw new RolloutError(
      "EBUNDLE_READ",
      `cannot read bundle ${where}: ${(cause as Error).message}`,
      { where },
      { cause },
    );
  }
}
