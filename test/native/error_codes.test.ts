/**
 * The C++ engine and its TypeScript face name the same error codes: the list in
 * native/src/error_codes.h (as the compiler reads it) equals `engineErrorCodes`, and every code a
 * native source throws is on it, so no rejection reaches TypeScript as an unknown code.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { engineErrorCodes } from "../../native/errors.js";

const run = promisify(execFile);
const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../native/src");

/** The codes of error_codes.h, printed by a program compiled against it. */
async function headerCodes(dir: string): Promise<string[]> {
  const main = path.join(dir, "print_codes.cc");
  await writeFile(
    main,
    `#include <cstdio>\n#include "${path.join(src, "error_codes.h")}"\nint main() { for (const char* c : hotpatch::kErrorCodes) std::puts(c); }\n`,
  );
  await run("g++", ["-std=c++17", "-o", path.join(dir, "print_codes"), main]);
  const { stdout } = await run(path.join(dir, "print_codes"), []);
  return stdout.trim().split("\n");
}

describe("engine error codes", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "hotpatch-codes-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("the C++ list and the TypeScript list are the same codes", async () => {
    assert.deepEqual([...(await headerCodes(dir))].sort(), [...engineErrorCodes].sort());
  });

  it("every code a native source throws is on the list", async () => {
    const known = new Set<string>(engineErrorCodes);
    const unknown: string[] = [];
    for (const f of await readdir(src, { recursive: true })) {
      if (!/\.(cc|h)$/.test(f) || f === "error_codes.h") continue;
      const text = await readFile(path.join(src, f), "utf8");
      for (const [, code = ""] of text.matchAll(/"(E[A-Z][A-Z0-9_]+)"/g))
        if (!known.has(code)) unknown.push(`${f}: ${code}`);
    }
    assert.deepEqual(unknown, []);
  });
});
