/**
 * Unified diffs (`git diff`, `git show`, `diff -u`, `diff -ruN`): parsed strictly, applied to a
 * copy of the source tree with no fuzz, and turned into line maps (old line → new line) so that a
 * change of `__LINE__` alone can be recognised.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { BundleError } from "../errors.js";

/** One `@@ -a,b +c,d @@` block. */
export interface Hunk {
  oldStart: number;
  oldLines: number;
  newStart: number;
  newLines: number;
  /** The text after the second `@@` (the function `diff -p` and git name), trimmed. */
  context: string;
  /** Lines with their first character (' ', '-', '+'); "\ No newline" markers are folded in. */
  lines: string[];
  /** 1-based number of the `@@` line in the diff, for messages. */
  at: number;
}

/** The changes to one file. */
export interface FileDiff {
  /** Path relative to the tree root, or null when the file is created. */
  oldPath: string | null;
  /** Path relative to the tree root, or null when the file is deleted. */
  newPath: string | null;
  hunks: Hunk[];
  /** Whether the new file ends without a newline. */
  newNoNewline: boolean;
}

function ediff(message: string): BundleError {
  return new BundleError("EDIFF", message);
}

const HUNK = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$/;

/** `a/x.c`, `b/x.c`, `./x.c`, `x.c` → `x.c`; `/dev/null` → null. Refuses paths leaving the tree. */
function stripPath(raw: string, line: number): string | null {
  const name = raw.split("\t")[0]?.trim() ?? "";
  if (name === "/dev/null") return null;
  let p = name.replace(/^"(.*)"$/, "$1");
  if (/^[ab]\//.test(p)) p = p.slice(2);
  while (p.startsWith("./")) p = p.slice(2);
  const normal = path.posix.normalize(p);
  if (normal === "" || normal === "." || normal.startsWith("../") || normal === ".." || path.posix.isAbsolute(normal)) {
    throw ediff(`diff line ${line}: the path ${JSON.stringify(name)} is outside the source tree`);
  }
  return normal;
}

/** Parses every file of a unified diff. Lines outside file sections (commit messages, `diff --git`, `index`) are skipped. */
export function parseUnifiedDiff(text: string): FileDiff[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const files: FileDiff[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (!line.startsWith("--- ") || !(lines[i + 1] ?? "").startsWith("+++ ")) {
      i++;
      continue;
    }
    const file: FileDiff = {
      oldPath: stripPath(line.slice(4), i + 1),
      newPath: stripPath((lines[i + 1] as string).slice(4), i + 2),
      hunks: [],
      newNoNewline: false,
    };
    i += 2;
    while (i < lines.length && HUNK.test(lines[i] as string)) {
      const m = HUNK.exec(lines[i] as string) as RegExpExecArray;
      const hunk: Hunk = {
        oldStart: Number(m[1]),
        oldLines: m[2] === undefined ? 1 : Number(m[2]),
        newStart: Number(m[3]),
        newLines: m[4] === undefined ? 1 : Number(m[4]),
        context: (m[5] ?? "").trim(),
        lines: [],
        at: i + 1,
      };
      i++;
      let olds = 0;
      let news = 0;
      while (olds < hunk.oldLines || news < hunk.newLines) {
        const l = lines[i];
        if (l === undefined) throw ediff(`diff line ${hunk.at}: the hunk ends early (the diff is cut short)`);
        const kind = l === "" ? " " : l[0];
        if (kind === "\\") {
          i++;
          continue;
        }
        if (kind !== " " && kind !== "-" && kind !== "+") {
          throw ediff(`diff line ${i + 1}: expected a context, '-' or '+' line in the hunk at line ${hunk.at}`);
        }
        if (kind !== "+") olds++;
        if (kind !== "-") news++;
        hunk.lines.push(l === "" ? " " : l);
        i++;
      }
      if (olds !== hunk.oldLines || news !== hunk.newLines) {
        throw ediff(`diff line ${hunk.at}: the hunk's line counts do not match its lines`);
      }
      if ((lines[i] ?? "").startsWith("\\")) {
        if (hunk.lines.at(-1)?.[0] !== "-") file.newNoNewline = true;
        i++;
      }
      file.hunks.push(hunk);
    }
    if (file.hunks.length === 0) throw ediff(`diff line ${i}: ${file.newPath ?? file.oldPath} has no hunk`);
    files.push(file);
  }
  if (files.length === 0) throw ediff("the diff changes no file (expected a unified diff: git diff, diff -u)");
  return files;
}

function hunkName(file: FileDiff, hunk: Hunk, n: number): string {
  const ctx = hunk.context ? ` (${hunk.context})` : "";
  return `hunk #${n} of ${file.newPath ?? file.oldPath} at diff line ${hunk.at}, @@ -${hunk.oldStart},${hunk.oldLines} +${hunk.newStart},${hunk.newLines} @@${ctx}`;
}

/** Applies one file's hunks to its old text, exactly (no fuzz, no offset): EDIFF names the hunk that does not apply. */
export function applyFileDiff(file: FileDiff, old: string | null): string {
  const oldLines = old === null ? [] : old.split("\n");
  const oldEndsWithNewline = old?.endsWith("\n") === true;
  if (oldEndsWithNewline) oldLines.pop();
  const out: string[] = [];
  let at = 0; // next old line (0-based) not yet copied
  file.hunks.forEach((hunk, k) => {
    const start = hunk.oldLines === 0 ? hunk.oldStart : hunk.oldStart - 1;
    if (start < at || start > oldLines.length) {
      throw ediff(
        `${hunkName(file, hunk, k + 1)} does not apply: it starts outside the file or before the previous hunk`,
      );
    }
    out.push(...oldLines.slice(at, start));
    let pos = start;
    for (const l of hunk.lines) {
      const text = l.slice(1);
      if (l[0] === "+") {
        out.push(text);
        continue;
      }
      if (oldLines[pos] !== text) {
        throw ediff(
          `${hunkName(file, hunk, k + 1)} does not apply: line ${pos + 1} of the file is ${JSON.stringify(oldLines[pos] ?? "(end of file)")}, the diff expects ${JSON.stringify(text)}`,
        );
      }
      if (l[0] === " ") out.push(text);
      pos++;
    }
    at = pos;
  });
  out.push(...oldLines.slice(at));
  const keepsNewline = file.newNoNewline ? false : old === null || oldEndsWithNewline || file.hunks.length > 0;
  return out.join("\n") + (keepsNewline && out.length > 0 ? "\n" : "");
}

/** Applies the diff to the tree at `root` (a copy); returns the paths (relative) it created or changed. */
export async function applyDiffToTree(files: FileDiff[], root: string): Promise<string[]> {
  const changed: string[] = [];
  for (const file of files) {
    const rel = file.oldPath ?? (file.newPath as string);
    const abs = path.join(root, rel);
    const old = file.oldPath === null ? null : await readFile(abs, "utf8").catch(() => undefined);
    if (old === undefined) throw ediff(`the diff changes ${rel}, which is not in the source tree`);
    const text = applyFileDiff(file, old);
    if (file.newPath === null) {
      await rm(abs);
      changed.push(rel);
      continue;
    }
    const dest = path.join(root, file.newPath);
    await mkdir(path.dirname(dest), { recursive: true });
    await writeFile(dest, text);
    if (file.oldPath !== null && file.oldPath !== file.newPath) await rm(abs);
    changed.push(file.newPath);
  }
  return changed;
}

/**
 * For one file: maps an old line number to its new number, or null when that line was removed or
 * changed. Used to recognise code that differs only in `__LINE__` values.
 */
export function lineMap(file: FileDiff): (oldLine: number) => number | null {
  const inside = new Map<number, number | null>();
  const after: { from: number; delta: number }[] = [];
  for (const hunk of file.hunks) {
    let o = hunk.oldLines === 0 ? hunk.oldStart + 1 : hunk.oldStart;
    let n = hunk.newLines === 0 ? hunk.newStart + 1 : hunk.newStart;
    for (const l of hunk.lines) {
      if (l[0] === "-") inside.set(o++, null);
      else if (l[0] === "+") n++;
      else inside.set(o++, n++);
    }
    after.push({ from: o, delta: n - o });
  }
  return (oldLine) => {
    const known = inside.get(oldLine);
    if (known !== undefined) return known;
    let d = 0;
    for (const s of after) if (oldLine >= s.from) d = s.delta;
    return oldLine + d;
  };
}
