/**
 * A small strict parser of the Prometheus text exposition format (version 0.0.4), and the
 * deterministic flat name of a sample: `name` or `name{a="x",b="y"}` with labels sorted by name.
 * Anything the format does not allow (a bad name, an unknown escape, a repeated series, two TYPE
 * lines for one metric, a value that is not a number) is an `EBAD_METRICS` error naming the line.
 */
import { AgentError } from "../errors.js";

/** One sample line. */
export interface Sample {
  /** Metric name as written (`http_requests_total`, `rpc_seconds_bucket`). */
  name: string;
  /** Labels with a non-empty value, sorted by label name (an empty value means "no such label"). */
  labels: [string, string][];
  /** The value; NaN and ±Inf are kept here (the caller decides). */
  value: number;
  /** The optional timestamp (ms since epoch), or null. */
  timestampMs: number | null;
}

const metricName = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
const labelName = /[a-zA-Z_][a-zA-Z0-9_]*/y;
const blanks = /[ \t]*/y;
const decimal = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const specials = new Map([
  ["nan", Number.NaN],
  ["inf", Number.POSITIVE_INFINITY],
  ["+inf", Number.POSITIVE_INFINITY],
  ["-inf", Number.NEGATIVE_INFINITY],
  ["infinity", Number.POSITIVE_INFINITY],
  ["+infinity", Number.POSITIVE_INFINITY],
  ["-infinity", Number.NEGATIVE_INFINITY],
]);
const types = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** Parses a float as Prometheus does (decimal or exponent notation, NaN, ±Inf); null when it is none. */
export function parseValue(token: string): number | null {
  if (decimal.test(token)) return Number(token);
  return specials.get(token.toLowerCase()) ?? null;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** The sample's flat name: `name`, or `name{a="x",b="y"}` (labels sorted, values escaped as in the format). */
export function flatName(s: Pick<Sample, "name" | "labels">): string {
  if (s.labels.length === 0) return s.name;
  return `${s.name}{${s.labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

/** Reads one line; every method throws with the line's number on a malformed line. */
class LineReader {
  pos = 0;
  constructor(
    readonly text: string,
    readonly lineNo: number,
  ) {}

  fail(what: string): never {
    const shown = this.text.length > 120 ? `${this.text.slice(0, 120)}…` : this.text;
    throw new AgentError("EBAD_METRICS", `line ${this.lineNo}: ${what} (at column ${this.pos + 1} of: ${shown})`, {
      line: this.lineNo,
    });
  }

  skipBlanks(): number {
    blanks.lastIndex = this.pos;
    const m = blanks.exec(this.text);
    const n = m ? m[0].length : 0;
    this.pos += n;
    return n;
  }

  match(re: RegExp, what: string): string {
    re.lastIndex = this.pos;
    const m = re.exec(this.text);
    if (!m) this.fail(`expected ${what}`);
    this.pos += m[0].length;
    return m[0];
  }

  expect(ch: string): void {
    if (this.text[this.pos] !== ch) this.fail(`expected '${ch}'`);
    this.pos++;
  }

  /** A token up to the next blank. */
  token(): string {
    const start = this.pos;
    while (this.pos < this.text.length && this.text[this.pos] !== " " && this.text[this.pos] !== "\t") this.pos++;
    return this.text.slice(start, this.pos);
  }

  atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  /** A double-quoted label value with the escapes `\\`, `\"` and `\n`. */
  quoted(): string {
    this.expect('"');
    let out = "";
    for (;;) {
      if (this.atEnd()) this.fail("unterminated label value");
      const c = this.text[this.pos++] as string;
      if (c === '"') return out;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = this.text[this.pos++];
      if (e === "\\") out += "\\";
      else if (e === '"') out += '"';
      else if (e === "n") out += "\n";
      else {
        this.pos -= 2;
        this.fail(`unknown escape '\\${e ?? ""}' in a label value (only \\\\, \\" and \\n exist)`);
      }
    }
  }

  labels(): [string, string][] {
    const out: [string, string][] = [];
    this.expect("{");
    for (;;) {
      this.skipBlanks();
      if (this.text[this.pos] === "}") break;
      const name = this.match(labelName, "a label name");
      this.skipBlanks();
      this.expect("=");
      this.skipBlanks();
      const value = this.quoted();
      if (out.some(([k]) => k === name)) this.fail(`label ${name} given twice`);
      out.push([name, value]);
      this.skipBlanks();
      if (this.text[this.pos] === ",") this.pos++;
      else if (this.text[this.pos] !== "}") this.fail("expected ',' or '}' after a label");
    }
    this.pos++;
    return out.filter(([, v]) => v !== "").sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
}

/** Parses a whole exposition; throws `EBAD_METRICS` naming the first bad line. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  const seen = new Map<string, number>();
  const typed = new Map<string, number>();
  const helped = new Map<string, number>();
  const sampled = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const r: LineReader = new LineReader(lines[i] as string, i + 1);
    if (r.text.endsWith("\r")) {
      r.pos = r.text.length - 1;
      r.fail("carriage return: the format's lines end with LF only");
    }
    r.skipBlanks();
    if (r.atEnd()) continue;
    if (r.text[r.pos] === "#") {
      r.pos++;
      if (r.skipBlanks() === 0) continue;
      const keyword = r.token();
      if (keyword !== "HELP" && keyword !== "TYPE") continue; // a plain comment
      if (r.skipBlanks() === 0) r.fail(`expected a metric name after # ${keyword}`);
      const name = r.match(metricName, "a metric name");
      const table = keyword === "TYPE" ? typed : helped;
      const before = table.get(name);
      if (before !== undefined) r.fail(`second # ${keyword} for ${name} (the first is on line ${before})`);
      table.set(name, i + 1);
      if (keyword === "TYPE") {
        if (r.skipBlanks() === 0) r.fail(`expected a type after # TYPE ${name}`);
        const type = r.token();
        if (!types.has(type)) r.fail(`unknown type "${type}" (expected counter, gauge, histogram, summary or untyped)`);
        r.skipBlanks();
        if (!r.atEnd()) r.fail("unexpected text after the type");
        if (sampled.has(name)) r.fail(`# TYPE for ${name} after its samples`);
      }
      continue;
    }
    const name = r.match(metricName, "a metric name or '#'");
    const labels = r.text[r.pos] === "{" ? r.labels() : [];
    if (r.skipBlanks() === 0) r.fail("expected a blank before the value");
    const valueToken = r.token();
    const value = parseValue(valueToken);
    if (value === null) r.fail(`"${valueToken}" is not a number`);
    let timestampMs: number | null = null;
    if (r.skipBlanks() > 0 && !r.atEnd()) {
      const ts = r.token();
      if (!/^-?\d{1,16}$/.test(ts)) r.fail(`"${ts}" is not a timestamp (integer milliseconds)`);
      timestampMs = Number(ts);
      r.skipBlanks();
    }
    if (!r.atEnd()) r.fail("unexpected text after the sample");
    const sample: Sample = { name, labels, value, timestampMs };
    const key = flatName(sample);
    const first = seen.get(key);
    if (first !== undefined) r.fail(`${key} repeats the series of line ${first}`);
    seen.set(key, i + 1);
    sampled.add(name);
    samples.push(sample);
  }
  return samples;
}
