/**
 * Patch bundle from a one-file diff in a generated C project of about 150,000 lines, after the
 * project's own build (DESIGN target: well under a minute on 2 cores). The time is split into the
 * build (tree copy, the build command with wrappers, the two compiles of the touched unit), the
 * comparison and link, and writing the bundle; the baseline, measured in the same run, is the
 * project's own incremental `make` after the same change.
 */
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { buildBundleFromDiff } from "../bundle/index.js";
import { printTable, quantile } from "./stats.js";

const run = promisify(execFile);
const FILES = 150;
const FUNCTIONS = 58; // 17 lines each: about 1,000 lines a file, 150,000 in all
const runs = 3;

/** One generated unit: functions with loops, branches and calls into a static helper and a global. */
function unit(f: number): string {
  const lines = [`/* generated unit ${f} */`, '#include "common.h"', `static int state_${f};`, ""];
  lines.push(
    `static int helper_${f}(int x) {`,
    "  int r = x;",
    "  for (int i = 0; i < 8; i++) r = r * 31 + i;",
    "  return r ^ (r >> 7);",
    "}",
    "",
  );
  for (let k = 0; k < FUNCTIONS; k++) {
    lines.push(
      `int unit_${f}_fn_${k}(int x) {`,
      "  int acc = 0;",
      `  for (int i = 0; i < (x & 15); i++) {`,
      `    if (i % 3 == ${k % 3}) acc += helper_${f}(i + ${k});`,
      "    else acc -= i * SCALE;",
      "  }",
      "  switch (x & 3) {",
      `    case 0: acc += ${k}; break;`,
      `    case 1: acc ^= ${k * 7}; break;`,
      `    case 2: acc -= ${k * 3}; break;`,
      "    default: acc += x; break;",
      "  }",
      `  state_${f} += acc & 1;`,
      "  shared_total += acc;",
      `  return acc + state_${f};`,
      "}",
      "",
    );
  }
  return `${lines.join("\n")}\n`;
}

async function generate(dir: string): Promise<number> {
  await mkdir(dir, { recursive: true });
  let lines = 0;
  await writeFile(path.join(dir, "common.h"), "#define SCALE 3\nextern int shared_total;\n");
  const objs: string[] = [];
  for (let f = 0; f < FILES; f++) {
    const text = unit(f);
    lines += text.split("\n").length;
    await writeFile(path.join(dir, `unit_${f}.c`), text);
    objs.push(`unit_${f}.o`);
  }
  await writeFile(
    path.join(dir, "main.c"),
    `#include "common.h"\nint shared_total;\nint unit_0_fn_0(int);\nint main(int argc, char **argv) { (void)argv; return unit_0_fn_0(argc) & 1; }\n`,
  );
  await writeFile(
    path.join(dir, "Makefile"),
    `CFLAGS ?= -O2 -fPIE\nOBJS = main.o ${objs.join(" ")}\nbig: $(OBJS)\n\t$(CC) $(CFLAGS) -pie -o $@ $(OBJS)\n%.o: %.c common.h\n\t$(CC) $(CFLAGS) -c $< -o $@\n`,
  );
  return lines;
}

const tmp = await mkdtemp(path.join(os.tmpdir(), "hotpatch-build-bench-"));
try {
  const tree = path.join(tmp, "big");
  const lines = await generate(tree);
  const t0 = performance.now();
  await run("make", ["-s", `-j${os.availableParallelism()}`], { cwd: tree, maxBuffer: 16 << 20 });
  const fullBuildMs = performance.now() - t0;
  const diffFile = path.join(tmp, "fix.diff");
  await writeFile(
    diffFile,
    [
      "--- a/unit_77.c",
      "+++ b/unit_77.c",
      "@@ -4,7 +4,7 @@",
      " ",
      " static int helper_77(int x) {",
      "   int r = x;",
      "-  for (int i = 0; i < 8; i++) r = r * 31 + i;",
      "+  for (int i = 0; i < 9; i++) r = r * 31 + i;",
      "   return r ^ (r >> 7);",
      " }",
      " ",
      "",
    ].join("\n"),
  );

  const total: number[] = [];
  const build: number[] = [];
  const compare: number[] = [];
  const link: number[] = [];
  const write: number[] = [];
  const baseline: number[] = [];
  let patched = 0;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const r = await buildBundleFromDiff({
      target: path.join(tree, "big"),
      sourceDir: tree,
      diff: diffFile,
      out: path.join(tmp, `bundle-${i}`),
    });
    total.push(performance.now() - t);
    build.push(r.timings.buildMs);
    compare.push(r.timings.compareMs);
    link.push(r.timings.linkMs);
    write.push(r.timings.writeMs);
    patched = r.manifest.functions.length;
    // Baseline: the project's own incremental build of the same change, in a copy.
    const copy = path.join(tmp, `copy-${i}`);
    await cp(tree, copy, { recursive: true, preserveTimestamps: true });
    await run("patch", ["-s", "-p1", "-i", diffFile], { cwd: copy });
    const b = performance.now();
    await run("make", ["-s"], { cwd: copy });
    baseline.push(performance.now() - b);
    await rm(copy, { recursive: true, force: true });
  }
  const p50 = (v: number[]) => quantile(v, 0.5);
  console.log(
    `project: ${FILES + 1} files, ${lines} lines; its own full build (make -j${os.availableParallelism()}): ${(fullBuildMs / 1000).toFixed(1)} s`,
  );
  console.log(`patch: ${patched} functions replaced (a static helper inlined into its callers)`);
  printTable(
    ["what", "p50 ms", "max ms"],
    [
      ["hotpatch build --diff, total", p50(total).toFixed(0), Math.max(...total).toFixed(0)],
      ["  build (copy, wrapped build command, 2 compiles)", p50(build).toFixed(0), Math.max(...build).toFixed(0)],
      ["  compare (and prove against the target)", p50(compare).toFixed(0), Math.max(...compare).toFixed(0)],
      ["  link patch.so", p50(link).toFixed(0), Math.max(...link).toFixed(0)],
      ["  check and write the bundle", p50(write).toFixed(0), Math.max(...write).toFixed(0)],
      ["baseline: the project's incremental make", p50(baseline).toFixed(0), Math.max(...baseline).toFixed(0)],
    ],
  );
  console.log(
    `ratio total / incremental make: ${(p50(total) / p50(baseline)).toFixed(1)}x; target: well under 60,000 ms`,
  );
} finally {
  await rm(tmp, { recursive: true, force: true });
}
