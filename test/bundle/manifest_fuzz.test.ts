/**
 * The manifest parser against a few thousand generated inputs (seeded, so every run is the same):
 * mutations of a valid manifest that must be refused, others that must be accepted unchanged, and
 * raw junk. The parser may only ever throw BundleError EBAD_BUNDLE naming a field, and must never
 * accept anything invalid or let input keys reach a prototype.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BundleError, type BundleManifest, parseManifest, serializeManifest } from "../../bundle/index.js";

/** mulberry32: a small, fast, seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

const HEX = "0123456789abcdef";

class Gen {
  constructor(readonly rand: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)] as T;
  }
  hex(n: number): string {
    let s = "";
    for (let i = 0; i < n; i++) s += HEX[this.int(0, 15)];
    return s;
  }
  word(alphabet: string, lo: number, hi: number): string {
    let s = "";
    const n = this.int(lo, hi);
    for (let i = 0; i < n; i++) s += alphabet[this.int(0, alphabet.length - 1)];
    return s;
  }
  /** A valid manifest with every optional field, varied. */
  manifest(): Json {
    const count = this.int(1, 12);
    const functions: Json[] = [];
    for (let i = 0; i < count; i++) {
      const fn: { [key: string]: Json } = {
        symbol: `${this.rand() < 0.3 ? `${this.word("abcxyz_", 1, 8)}.c:` : ""}f${i}_${this.word("abc_0123", 0, 10)}`,
        replacement: `r${i}_${this.word("ABCxyz_9$.", 0, 12)}`,
      };
      if (this.rand() < 0.5) fn.consistency = this.pick(["strict", "entry"]);
      functions.push(fn);
    }
    return {
      schema: 1,
      id: `${this.word("abcXYZ019", 1, 1)}${this.word("abcXYZ019._-", 0, 40)}`,
      target: {
        path: `/usr/bin/${this.word("abc-_", 1, 20)}`,
        buildId: this.hex(2 * this.int(4, 64)),
        kind: this.pick(["executable", "library"]),
      },
      functions,
      loader: this.pick(["mmap", "dlopen", "auto"]),
      sha256: this.hex(64),
      createdAt: new Date(
        Date.UTC(2020 + this.int(0, 10), this.int(0, 11), this.int(1, 28), this.int(0, 23)),
      ).toISOString(),
      source: {
        file: `${this.word("abc_", 1, 10)}.c`,
        sha256: this.hex(64),
        compiler: "gcc (Debian 12.2.0) 12.2.0",
        flags: ["-shared", "-fPIC", "-O2"],
      },
    };
  }
}

const clone = (v: Json): Json => JSON.parse(JSON.stringify(v)) as Json;
const bytesOf = (v: unknown) => Buffer.from(JSON.stringify(v), "utf8");

/** Every path in the value (objects, arrays and leaves), with the JSON type at each. */
function paths(value: Json, at: Path = [], out: { path: Path; value: Json }[] = []): { path: Path; value: Json }[] {
  out.push({ path: at, value });
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) paths(v, [...at, i], out);
  } else if (value !== null && typeof value === "object")
    for (const [k, v] of Object.entries(value)) paths(v, [...at, k], out);
  return out;
}

function jsonType(v: Json): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

function parentOf(root: Json, path: Path): { parent: Json; key: string | number } {
  let node = root;
  for (const step of path.slice(0, -1)) node = (node as Record<string | number, Json>)[step] as Json;
  return { parent: node, key: path[path.length - 1] as string | number };
}

function set(root: Json, path: Path, value: Json): void {
  const { parent, key } = parentOf(root, path);
  Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
}

function remove(root: Json, path: Path): void {
  const { parent, key } = parentOf(root, path);
  delete (parent as Record<string | number, Json>)[key];
}

const OPTIONAL = (p: Path) =>
  p.join(".") === "target.path" ||
  p.join(".") === "createdAt" ||
  p.join(".") === "source" ||
  (p.length === 3 && p[0] === "functions" && p[2] === "consistency");

function isField(p: Path): boolean {
  return p.length > 0 && typeof p[p.length - 1] === "string";
}

const typeSamples: Json[] = [0, 1.5, -1, 1e308, true, false, null, "x", "", [], [1, "a"], {}, { a: 1 }];
const hostile: [Path, Json][] = [
  [["id"], "../etc"],
  [["id"], "/abs"],
  [["id"], "a/b"],
  [["id"], ".hidden"],
  [["id"], "-flag"],
  [["id"], ""],
  [["id"], "a".repeat(65)],
  [["id"], "nul\u0000byte"],
  [["id"], "ünïcode"],
  [["id"], "a b"],
  [["target", "buildId"], "ABCDEF12"],
  [["target", "buildId"], "abc"],
  [["target", "buildId"], "zz112233"],
  [["target", "buildId"], "1".repeat(130)],
  [["target", "path"], "/bin/\u001b[31mred"],
  [["target", "kind"], "core"],
  [["sha256"], "A".repeat(64)],
  [["sha256"], "0".repeat(63)],
  [["loader"], "ptrace"],
  [["loader"], "MMAP"],
  [["schema"], 2],
  [["schema"], "1"],
  [["createdAt"], "yesterday"],
  [["createdAt"], "2026-13-45T99:99:99Z"],
  [["functions", 0, "symbol"], "../../x"],
  [["functions", 0, "symbol"], "a.c:b:c"],
  [["functions", 0, "symbol"], "has space"],
  [["functions", 0, "symbol"], "1starts_with_digit"],
  [["functions", 0, "replacement"], "file.c:qualified"],
  [["functions", 0, "consistency"], "none"],
  [["source", "file"], "dir/file.c"],
  [["functions"], []],
];

type Case = { bytes: Buffer; expect: "reject" | "accept" | "either"; kind: string; value?: unknown };

function* cases(g: Gen, count: number): Generator<Case> {
  for (let i = 0; i < count; i++) {
    const base = g.manifest();
    const all = paths(base);
    const kind = g.pick([
      "valid",
      "dropRequired",
      "dropOptional",
      "unknownField",
      "wrongType",
      "hugeString",
      "nestedJunk",
      "randomBytes",
      "truncated",
      "hostile",
      "hugeArray",
      "duplicate",
      "flipByte",
      "pollution",
    ] as const);
    const m = clone(base);
    switch (kind) {
      case "valid":
        yield { bytes: bytesOf(m), expect: "accept", kind, value: m };
        break;
      case "dropRequired": {
        const required = all.filter((p) => isField(p.path) && !OPTIONAL(p.path));
        remove(m, g.pick(required).path);
        yield { bytes: bytesOf(m), expect: "reject", kind };
        break;
      }
      case "dropOptional": {
        for (const p of all.filter((q) => isField(q.path) && OPTIONAL(q.path))) if (g.rand() < 0.6) remove(m, p.path);
        yield { bytes: bytesOf(m), expect: "accept", kind, value: m };
        break;
      }
      case "unknownField": {
        const object = g.pick(all.filter((p) => jsonType(p.value) === "object"));
        const key = g.pick([
          "extra",
          "Id",
          "schema2",
          "__proto__",
          "constructor",
          "prototype",
          g.word("abcdef", 1, 12),
        ]);
        set(m, [...object.path, Object.hasOwn(object.value as object, key) ? `${key}_` : key], g.pick(typeSamples));
        yield { bytes: bytesOf(m), expect: "reject", kind };
        break;
      }
      case "wrongType": {
        const target = g.pick(all.filter((p) => p.path.length > 0 || g.rand() < 0.05));
        const replacement = g.pick(typeSamples.filter((s) => jsonType(s) !== jsonType(target.value)));
        if (target.path.length === 0) yield { bytes: bytesOf(replacement), expect: "reject", kind };
        else {
          set(m, target.path, replacement);
          yield { bytes: bytesOf(m), expect: "reject", kind };
        }
        break;
      }
      case "hugeString": {
        const strings = all.filter((p) => typeof p.value === "string");
        set(m, g.pick(strings).path, g.pick(["a", "0", "\u00e9", "/"]).repeat(g.int(5000, 100_000)));
        yield { bytes: bytesOf(m), expect: "reject", kind };
        break;
      }
      case "nestedJunk": {
        let junk: Json = g.pick(typeSamples);
        for (let d = g.int(1, 60); d > 0; d--) junk = g.rand() < 0.5 ? [junk] : { [g.word("xyz", 1, 3)]: junk };
        const at = g.pick(all.filter((p) => p.path.length > 0)).path;
        // Always an object holding the junk: a field expecting anything else refuses it, one expecting an object sees an unknown key.
        set(m, at, { junk });
        yield { bytes: bytesOf(m), expect: "reject", kind };
        break;
      }
      case "randomBytes": {
        const b = Buffer.alloc(g.int(0, 2000));
        for (let j = 0; j < b.length; j++) b[j] = g.int(0, 255);
        yield { bytes: b, expect: "reject", kind };
        break;
      }
      case "truncated": {
        const b = serializeManifest(base as unknown as BundleManifest);
        yield { bytes: b.subarray(0, g.int(0, b.length - 3)), expect: "reject", kind };
        break;
      }
      case "hostile": {
        const [at, value] = g.pick(hostile);
        set(m, at, value);
        yield { bytes: bytesOf(m), expect: "reject", kind };
        break;
      }
      case "hugeArray": {
        if (g.rand() < 0.5) {
          const n = g.int(257, 3000);
          set(
            m,
            ["functions"],
            Array.from({ length: n }, (_, j) => ({ symbol: `f${j}`, replacement: `r${j}` })),
          );
        } else {
          set(
            m,
            ["source", "flags"],
            Array.from({ length: g.int(129, 5000) }, () => "-O2"),
          );
        }
        yield { bytes: bytesOf(m), expect: "reject", kind };
        break;
      }
      case "duplicate": {
        const fns = (m as { functions: Json[] }).functions;
        fns.push(clone(g.pick(fns)));
        yield { bytes: bytesOf(m), expect: "reject", kind };
        break;
      }
      case "flipByte": {
        const b = Buffer.from(serializeManifest(base as unknown as BundleManifest));
        for (let k = g.int(1, 4); k > 0; k--) b[g.int(0, b.length - 1)] = g.int(0, 255);
        yield { bytes: b, expect: "either", kind };
        break;
      }
      case "pollution": {
        const text = bytesOf(m).toString().replace(/^\{/, `{"__proto__":{"polluted":true},`);
        yield { bytes: Buffer.from(text), expect: "reject", kind };
        break;
      }
    }
  }
}

describe("manifest parser fuzzing", () => {
  it("refuses every invalid input with EBAD_BUNDLE, accepts every valid one, never throws anything else", () => {
    const g = new Gen(prng(0x5eed_4));
    const counts = new Map<string, number>();
    let accepted = 0;
    for (const c of cases(g, 4000)) {
      counts.set(c.kind, (counts.get(c.kind) ?? 0) + 1);
      let result: BundleManifest | null = null;
      try {
        result = parseManifest(c.bytes);
      } catch (err) {
        assert.ok(err instanceof BundleError, `${c.kind}: threw ${String(err)}`);
        assert.equal(err.code, "EBAD_BUNDLE");
        assert.match(err.message, /^manifest\.json: \S+: /, `${c.kind}: the message names the field`);
        assert.ok(typeof err.context.field === "string" && err.context.field.length > 0);
        assert.ok(err.message.length < 1000, `${c.kind}: the message is short (${err.message.length})`);
        assert.notEqual(c.expect, "accept", `${c.kind}: a valid manifest was refused: ${err.message}`);
        continue;
      }
      accepted++;
      assert.notEqual(
        c.expect,
        "reject",
        `${c.kind}: accepted an invalid manifest: ${c.bytes.toString().slice(0, 300)}`,
      );
      if (c.expect === "accept")
        assert.deepEqual(result, c.value, `${c.kind}: the parsed manifest is what was written`);
      // Whatever was accepted is a plain object with only schema fields, and re-parses to itself.
      assert.equal(Object.getPrototypeOf(result), Object.prototype);
      assert.deepEqual(parseManifest(serializeManifest(result)), result);
    }
    assert.ok(accepted > 300, `enough valid cases ran (${accepted})`);
    for (const [kind, n] of counts) assert.ok(n > 100, `${kind} ran ${n} times`);
    assert.equal(({} as Record<string, unknown>).polluted, undefined, "no input reached Object.prototype");
  });

  it("refuses deeply nested JSON and a manifest over 64 KiB without a stack overflow", () => {
    for (const bytes of [Buffer.from(`${"[".repeat(60_000)}${"]".repeat(60_000)}`), Buffer.from("[".repeat(32_000))]) {
      assert.throws(
        () => parseManifest(bytes),
        (err: unknown) => err instanceof BundleError && err.code === "EBAD_BUNDLE",
      );
    }
  });

  it("refuses invalid UTF-8 and a byte-order mark", () => {
    const good = serializeManifest(new Gen(prng(1)).manifest() as unknown as BundleManifest);
    const bad = Buffer.concat([good.subarray(0, 20), Buffer.from([0xc3, 0x28]), good.subarray(20)]);
    assert.throws(() => parseManifest(bad), /not valid UTF-8/);
    assert.throws(() => parseManifest(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), good])), /not JSON/);
  });
});
