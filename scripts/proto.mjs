#!/usr/bin/env node
// Regenerates the ts-proto code in proto/gen from proto/hotpatch/v1/*.proto with buf and ts-proto
// (both from node_modules: nothing is downloaded). `--out DIR` writes to DIR/gen instead, which is
// how the freshness test compares a new generation with the committed one.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const protoDir = path.join(root, "proto");
const outIndex = process.argv.indexOf("--out");
const base = outIndex >= 0 ? path.resolve(process.argv[outIndex + 1]) : protoDir;

rmSync(path.join(base, "gen"), { recursive: true, force: true });
execFileSync(path.join(root, "node_modules/.bin/buf"), ["generate", "--output", base], {
  cwd: protoDir,
  stdio: "inherit",
});
