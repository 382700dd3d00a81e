/**
 * Strict reading and writing of manifest.json (schema 1). The parser takes untrusted bytes: every
 * field is type- and size-checked, unknown fields are refused, and the result is built from fresh
 * objects so nothing of the input (prototypes, extra keys) survives.
 */
import { BundleError } from "./errors.js";
import type { BundleFunction, BundleManifest, BundleSource, BundleTarget, Consistency, LoaderKind } from "./types.js";

/** Largest manifest.json accepted, in bytes. */
export const MAX_MANIFEST_BYTES = 64 * 1024;
/** Most functions one bundle may replace. */
export const MAX_FUNCTIONS = 256;

/** A patch id: becomes a file or directory name, so no separators, no leading dot. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A symbol name as ELF tables and C/C++ compilers write them (mangled C++ included). */
export const SYMBOL_NAME = /^[A-Za-z_.$][A-Za-z0-9_.$]{0,1023}$/;
/** A target symbol, optionally qualified by the source file that defines it: `file.c:name`. */
export const QUALIFIED_SYMBOL = /^(?:([A-Za-z0-9_.+/-]{1,255}):)?([A-Za-z_.$][A-Za-z0-9_.$]{0,1023})$/;
const BUILD_ID = /^(?:[0-9a-f]{2}){4,64}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;
// Printable text without control characters (informational strings still end up in terminals).
const PRINTABLE = /^[^\p{Cc}]*$/u;

const loaders: readonly LoaderKind[] = ["mmap", "dlopen", "auto"];
const consistencies: readonly Consistency[] = ["strict", "entry"];

function bad(field: string, message: string): BundleError {
  return new BundleError("EBAD_BUNDLE", `manifest.json: ${field}: ${message}`, { field });
}

type Json = Record<string, unknown>;

function object(value: unknown, field: string, allowed: readonly string[], required: readonly string[]): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad(field, "must be an object");
  if (Object.getPrototypeOf(value) !== Object.prototype) throw bad(field, "must be a plain object");
  const keys = Reflect.ownKeys(value);
  for (const key of keys) {
    if (typeof key !== "string" || !allowed.includes(key)) {
      throw bad(field, `unknown field ${JSON.stringify(String(key)).slice(0, 80)} (allowed: ${allowed.join(", ")})`);
    }
  }
  for (const key of required) {
    if (!Object.hasOwn(value, key)) throw bad(field === "(root)" ? key : `${field}.${key}`, "is required");
  }
  return value as Json;
}

function string(value: unknown, field: string, max: number, pattern?: RegExp, what?: string): string {
  if (typeof value !== "string") throw bad(field, "must be a string");
  if (value.length === 0 || value.length > max) throw bad(field, `must be 1 to ${max} characters`);
  if (!PRINTABLE.test(value)) throw bad(field, "must not contain control characters");
  if (pattern && !pattern.test(value)) throw bad(field, `must be ${what ?? `like ${pattern.source}`}`);
  return value;
}

function oneOf<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
  if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) {
    throw bad(field, `must be one of ${choices.map((c) => JSON.stringify(c)).join(", ")}`);
  }
  return value as T;
}

function parseTarget(value: unknown): BundleTarget {
  const o = object(value, "target", ["path", "buildId", "kind"], ["buildId", "kind"]);
  const path = o.path === undefined ? undefined : string(o.path, "target.path", 4096);
  return {
    ...(path !== undefined ? { path } : {}),
    buildId: string(o.buildId, "target.buildId", 128, BUILD_ID, "lowercase hex, 8 to 128 digits, even length"),
    kind: oneOf(o.kind, "target.kind", ["executable", "library"] as const),
  };
}

function parseFunction(value: unknown, i: number): BundleFunction {
  const field = `functions[${i}]`;
  const o = object(value, field, ["symbol", "replacement", "consistency"], ["symbol", "replacement"]);
  const fn: BundleFunction = {
    symbol: string(o.symbol, `${field}.symbol`, 1300, QUALIFIED_SYMBOL, "a symbol name or file.c:name"),
    replacement: string(o.replacement, `${field}.replacement`, 1024, SYMBOL_NAME, "a symbol name"),
  };
  if (o.consistency !== undefined) fn.consistency = oneOf(o.consistency, `${field}.consistency`, consistencies);
  return fn;
}

function parseFunctions(value: unknown): BundleFunction[] {
  if (!Array.isArray(value)) throw bad("functions", "must be an array");
  if (value.length === 0 || value.length > MAX_FUNCTIONS)
    throw bad("functions", `must hold 1 to ${MAX_FUNCTIONS} entries`);
  const seen = new Set<string>();
  const out: BundleFunction[] = [];
  for (let i = 0; i < value.length; i++) {
    const fn = parseFunction(value[i], i);
    if (seen.has(fn.symbol)) throw bad(`functions[${i}].symbol`, `${fn.symbol} is replaced twice`);
    seen.add(fn.symbol);
    out.push(fn);
  }
  return out;
}

function parseSource(value: unknown): BundleSource {
  const o = object(value, "source", ["file", "sha256", "compiler", "flags"], ["file", "sha256", "compiler", "flags"]);
  const flags = o.flags;
  if (!Array.isArray(flags) || flags.length > 128) throw bad("source.flags", "must be an array of at most 128 strings");
  return {
    file: string(o.file, "source.file", 255, /^[^/]+$/, "a file name without directories"),
    sha256: string(o.sha256, "source.sha256", 64, SHA256, "64 lowercase hex digits"),
    compiler: string(o.compiler, "source.compiler", 256),
    flags: flags.map((f, i) => string(f, `source.flags[${i}]`, 1024)),
  };
}

/** Checks a parsed JSON value against schema 1 and returns a fresh, validated manifest. */
export function validateManifest(value: unknown): BundleManifest {
  const root = object(
    value,
    "(root)",
    ["schema", "id", "target", "functions", "loader", "sha256", "createdAt", "source"],
    ["schema", "id", "target", "functions", "loader", "sha256"],
  );
  if (root.schema !== 1)
    throw bad("schema", `must be 1 (this hotpatch reads schema 1), got ${JSON.stringify(root.schema)?.slice(0, 40)}`);
  const manifest: BundleManifest = {
    schema: 1,
    id: string(root.id, "id", 64, ID_PATTERN, "a slug: letters, digits, '.', '_', '-', not starting with '.' or '-'"),
    target: parseTarget(root.target),
    functions: parseFunctions(root.functions),
    loader: oneOf(root.loader, "loader", loaders),
    sha256: string(root.sha256, "sha256", 64, SHA256, "64 lowercase hex digits"),
  };
  if (root.createdAt !== undefined) {
    const at = string(root.createdAt, "createdAt", 40, ISO_UTC, "an ISO 8601 UTC time such as 2026-01-31T12:00:00Z");
    if (Number.isNaN(Date.parse(at))) throw bad("createdAt", "is not a valid date");
    manifest.createdAt = at;
  }
  if (root.source !== undefined) manifest.source = parseSource(root.source);
  return manifest;
}

/** Parses manifest.json bytes: UTF-8 JSON of at most 64 KiB that follows schema 1. Throws only BundleError. */
export function parseManifest(bytes: Uint8Array): BundleManifest {
  if (bytes.length === 0) throw bad("(file)", "is empty");
  if (bytes.length > MAX_MANIFEST_BYTES)
    throw bad("(file)", `is ${bytes.length} bytes, more than ${MAX_MANIFEST_BYTES}`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (err) {
    throw new BundleError(
      "EBAD_BUNDLE",
      "manifest.json: (file): is not valid UTF-8",
      { field: "(file)" },
      { cause: err },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message.slice(0, 200) : "invalid";
    throw new BundleError(
      "EBAD_BUNDLE",
      `manifest.json: (file): is not JSON (${detail})`,
      { field: "(file)" },
      { cause: err },
    );
  }
  return validateManifest(value);
}

/** The canonical bytes of a manifest: fixed field order, two-space indent, trailing newline. */
export function serializeManifest(manifest: BundleManifest): Buffer {
  const checked = validateManifest(JSON.parse(JSON.stringify(manifest)));
  return Buffer.from(`${JSON.stringify(checked, null, 2)}\n`, "utf8");
}
