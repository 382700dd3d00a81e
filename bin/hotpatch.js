#!/usr/bin/env node
// Entry point of the `hotpatch` command: runs the compiled CLI from dist/ (built by `npm ci`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write("hotpatch: not built yet; run `npm run build` in the hotpatch folder first\n");
  process.exit(70);
}
const { run } = await import(main.href);
process.exitCode = await run(process.argv);
