/** proto/gen is committed: it must be exactly what `npm run proto` produces from proto/hotpatch. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

it("proto/gen matches a fresh generation from the .proto files", async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-proto-"));
  try {
    await promisify(execFile)("node", [path.join(root, "scripts/proto.mjs"), "--out", tmp]);
    const fresh = path.join(tmp, "gen");
    const committed = path.join(root, "proto/gen");
    const files = await listFiles(fresh);
    assert.deepEqual(await listFiles(committed), files, "same files; run `npm run proto` and commit");
    for (const f of files) {
      const [a, b] = await Promise.all([
        readFile(path.join(committed, f), "utf8"),
        readFile(path.join(fresh, f), "utf8"),
      ]);
      assert.equal(a, b, `${f} is stale; run \`npm run proto\` and commit`);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
