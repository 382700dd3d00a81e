/**
 * The one field validator for documents read from YAML (the agent's config, rollout plans): each
 * reader checks one value, records what is wrong in one message form, "expected <what>, got
 * <value>", under the field's dotted path, and returns undefined (or the default), so a schema reads
 * on and reports every bad field at once.
 */
import path from "node:path";

/** One bad field: where, and what is wrong. */
export interface FieldIssue {
  /** Dotted path of the field, e.g. `grpc.listen`, `services[0].probes[1].timeoutMs`, `gates.metrics[1].op`. */
  field: string;
  /** What is wrong and what value is expected. */
  message: string;
}

/** A YAML mapping as read. */
export type Mapping = Record<string, unknown>;

/** The path of `key` inside the field `base` (`a.b`, `a[2]`; a key at the top level is itself). */
export function fieldPath(base: string, key: string | number): string {
  return typeof key === "number" ? `${base}[${key}]` : base === "" ? key : `${base}.${key}`;
}

/** Certificate files of an mTLS endpoint. */
export interface TlsFiles {
  /** CA bundle that verifies the peer. */
  ca: string;
  /** Our own certificate. */
  cert: string;
  /** Its private key. */
  key: string;
}

function nonEmpty(s: unknown): string | null {
  return typeof s === "string" && s.length > 0 ? s : null;
}

/** Collects the issues of one document while its fields are read. */
export class FieldReader {
  readonly issues: FieldIssue[] = [];

  /** `baseDir` resolves relative file paths. */
  constructor(readonly baseDir: string) {}

  /** Records a problem that no single reader sees (a relation between fields). */
  bad(field: string, message: string): undefined {
    this.issues.push({ field, message });
    return undefined;
  }

  /** Records "expected `what`, got `value`". */
  expected(field: string, what: string, value: unknown): undefined {
    return this.bad(field, `expected ${what}, got ${value === undefined ? "nothing" : JSON.stringify(value)}`);
  }

  /** A mapping; with `keys`, every other key is reported (typos must not pass silently). */
  mapping(v: unknown, field: string, keys?: readonly string[]): Mapping | undefined {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return this.expected(field, "a mapping", v);
    if (keys) this.known(v as Mapping, field, keys);
    return v as Mapping;
  }

  /** Reports the keys of `o` that are not in `keys`. */
  known(o: Mapping, field: string, keys: readonly string[]): void {
    for (const k of Object.keys(o))
      if (!keys.includes(k)) this.bad(fieldPath(field, k), `unknown field; expected one of ${keys.join(", ")}`);
  }

  /** Reports each of `keys` that `o` lacks. */
  required(o: Mapping, keys: readonly string[], what: (key: string) => string = () => "a value"): void {
    for (const k of keys) if (o[k] === undefined) this.expected(k, what(k), undefined);
  }

  /** A value `parse` accepts (it returns null for anything else), described as `what` in the message. */
  value<T>(v: unknown, field: string, what: string, parse: (v: unknown) => T | null, fallback: T): T;
  value<T>(v: unknown, field: string, what: string, parse: (v: unknown) => T | null): T | undefined;
  value<T>(v: unknown, field: string, what: string, parse: (v: unknown) => T | null, fallback?: T): T | undefined {
    if (v === undefined && fallback !== undefined) return fallback;
    const out = v === undefined ? null : parse(v);
    if (out !== null) return out;
    this.expected(field, what, v);
    return fallback;
  }

  string(v: unknown, field: string, fallback: string): string;
  string(v: unknown, field: string): string | undefined;
  string(v: unknown, field: string, fallback?: string): string | undefined {
    return this.value(v, field, "a non-empty string", nonEmpty, fallback as string);
  }

  /** A string that matches `pattern`, described as `what`. */
  matching(v: unknown, field: string, pattern: RegExp, what: string): string | undefined {
    return this.value(v, field, what, (s) => (typeof s === "string" && pattern.test(s) ? s : null));
  }

  /** A file path, resolved against the document's folder. */
  file(v: unknown, field: string, fallback: string): string;
  file(v: unknown, field: string): string | undefined;
  file(v: unknown, field: string, fallback?: string): string | undefined {
    const s = this.value(v, field, "a non-empty string", nonEmpty, fallback as string);
    return s === undefined ? undefined : path.resolve(this.baseDir, s);
  }

  /** A whole number from `min` to `max`. */
  int(v: unknown, field: string, min: number, max: number, fallback: number): number;
  int(v: unknown, field: string, min: number, max?: number): number | undefined;
  int(v: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER, fallback?: number): number | undefined {
    const range = max < Number.MAX_SAFE_INTEGER ? `from ${min} to ${max}` : `from ${min} up`;
    const ok = (n: unknown) => (typeof n === "number" && Number.isInteger(n) && n >= min && n <= max ? n : null);
    return this.value(v, field, `an integer ${range}`, ok, fallback as number);
  }

  /** A finite number. */
  number(v: unknown, field: string): number | undefined {
    return this.value(v, field, "a finite number", (n) => (typeof n === "number" && Number.isFinite(n) ? n : null));
  }

  bool(v: unknown, field: string, fallback: boolean): boolean;
  bool(v: unknown, field: string, fallback?: boolean): boolean | undefined {
    return this.value(v, field, "true or false", (b) => (typeof b === "boolean" ? b : null), fallback as boolean);
  }

  list(v: unknown, field: string, fallback: unknown[]): unknown[];
  list(v: unknown, field: string): unknown[] | undefined;
  list(v: unknown, field: string, fallback?: unknown[]): unknown[] | undefined {
    return this.value(v, field, "a list", (l) => (Array.isArray(l) ? (l as unknown[]) : null), fallback as unknown[]);
  }

  oneOf<T extends string>(v: unknown, field: string, options: readonly T[], fallback: T): T;
  oneOf<T extends string>(v: unknown, field: string, options: readonly T[]): T | undefined;
  oneOf<T extends string>(v: unknown, field: string, options: readonly T[], fallback?: T): T | undefined {
    const ok = (s: unknown) => (typeof s === "string" && (options as readonly string[]).includes(s) ? (s as T) : null);
    return this.value(v, field, `one of ${options.join(", ")}`, ok, fallback as T);
  }

  /**
   * The security of an endpoint section: `insecure: true` (a lab), or a `tls` mapping of ca, cert and
   * key files (mTLS, the default). `at` is the section's path; a section with both is reported at
   * `conflictAt`.
   */
  tls(section: Mapping, at: string, conflictAt = fieldPath(at, "tls")): TlsFiles | "insecure" {
    const insecure = this.bool(section.insecure, fieldPath(at, "insecure"), false);
    const tlsAt = fieldPath(at, "tls");
    if (insecure) {
      if (section.tls !== undefined)
        this.bad(conflictAt, `expected either tls or ${fieldPath(at, "insecure")}: true, not both (pick one)`);
      return "insecure";
    }
    if (section.tls === undefined) {
      this.bad(
        tlsAt,
        `mTLS is required: give ca, cert and key files, or set ${fieldPath(at, "insecure")}: true for a lab`,
      );
      return "insecure";
    }
    const t = this.mapping(section.tls, tlsAt, ["ca", "cert", "key"]);
    if (!t) return "insecure";
    return {
      ca: this.file(t.ca, fieldPath(tlsAt, "ca")) ?? "",
      cert: this.file(t.cert, fieldPath(tlsAt, "cert")) ?? "",
      key: this.file(t.key, fieldPath(tlsAt, "key")) ?? "",
    };
  }
}
