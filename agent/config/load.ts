/** Reads the agent's YAML configuration and validates every field, reporting all bad fields at once. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "yaml";
import { ConfigError, type ConfigIssue } from "../errors.js";
import type {
  AgentConfig,
  AuditConfig,
  CommandConfig,
  GrpcSecurity,
  HooksConfig,
  ProbeConfig,
  RoleSource,
  ScrapeConfig,
  SelectorConfig,
  ServiceConfig,
  ServiceMetricsConfig,
  UploadsConfig,
} from "./types.js";

type Obj = Record<string, unknown>;

const nameRe = /^[A-Za-z0-9_-]{1,64}$/;
const hostPortRe = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
/** A Prometheus metric name (it cannot hold a '.', so `<service>.proc.*` never collides with a scraped name). */
const metricNameRe = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const levels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** Collects issues while reading fields; each getter returns a usable fallback after recording a problem. */
class Reader {
  readonly issues: ConfigIssue[] = [];
  constructor(private readonly baseDir: string) {}

  bad(field: string, message: string): void {
    this.issues.push({ field, message });
  }

  private show(v: unknown): string {
    return v === undefined ? "nothing" : JSON.stringify(v);
  }

  obj(v: unknown, field: string, required = true): Obj | undefined {
    if (v === undefined && !required) return undefined;
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      this.bad(field, `expected a mapping, got ${this.show(v)}`);
      return undefined;
    }
    return v as Obj;
  }

  /** Reports keys the schema does not know (typos must not pass silently). */
  known(o: Obj, field: string, keys: string[]): void {
    for (const k of Object.keys(o)) {
      if (!keys.includes(k)) this.bad(join(field, k), `unknown field; expected one of ${keys.join(", ")}`);
    }
  }

  name(v: unknown, field: string): string {
    if (typeof v === "string" && nameRe.test(v)) return v;
    this.bad(
      field,
      `expected a name of 1-64 letters, digits, '-' or '_' (it becomes a NATS subject token), got ${this.show(v)}`,
    );
    return "invalid";
  }

  str(v: unknown, field: string, fallback?: string): string {
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v === "string" && v.length > 0) return v;
    this.bad(field, `expected a non-empty string, got ${this.show(v)}`);
    return "";
  }

  file(v: unknown, field: string, fallback?: string): string {
    const s = this.str(v, field, fallback);
    return s === "" ? s : path.resolve(this.baseDir, s);
  }

  int(v: unknown, field: string, min: number, max: number, fallback?: number): number {
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v === "number" && Number.isInteger(v) && v >= min && v <= max) return v;
    this.bad(field, `expected an integer from ${min} to ${max}, got ${this.show(v)}`);
    return fallback ?? min;
  }

  bool(v: unknown, field: string, fallback: boolean): boolean {
    if (v === undefined) return fallback;
    if (typeof v === "boolean") return v;
    this.bad(field, `expected true or false, got ${this.show(v)}`);
    return fallback;
  }

  hostPort(v: unknown, field: string, fallback?: string): string {
    if (v === undefined && fallback !== undefined) return fallback;
    const m = typeof v === "string" ? hostPortRe.exec(v) : null;
    if (m && Number(m[2]) <= 65535) return v as string;
    this.bad(field, `expected "host:port" (e.g. 127.0.0.1:7443; port 0 picks a free one), got ${this.show(v)}`);
    return "127.0.0.1:0";
  }

  list(v: unknown, field: string, fallback?: unknown[]): unknown[] {
    if (v === undefined && fallback !== undefined) return fallback;
    if (Array.isArray(v)) return v;
    this.bad(field, `expected a list, got ${this.show(v)}`);
    return [];
  }

  oneOf<T extends string>(v: unknown, field: string, options: readonly T[], fallback?: T): T {
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v === "string" && (options as readonly string[]).includes(v)) return v as T;
    this.bad(field, `expected one of ${options.join(", ")}, got ${this.show(v)}`);
    return options[0] as T;
  }

  /** A command as a list of strings, or one string split on spaces. */
  command(v: unknown, field: string, timeoutMs: number): CommandConfig | undefined {
    if (v === undefined) return undefined;
    const isMap = v !== null && typeof v === "object" && !Array.isArray(v);
    if (typeof v !== "string" && !Array.isArray(v) && !isMap) {
      this.bad(field, `expected a command: a string, a list of arguments, or {run, timeoutMs}; got ${this.show(v)}`);
      return undefined;
    }
    const o = isMap ? (v as Obj) : { run: v };
    if (isMap) this.known(o, field, ["run", "timeoutMs"]);
    const run = o.run;
    const argv = typeof run === "string" ? run.split(/\s+/).filter(Boolean) : run;
    if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string" && a.length > 0)) {
      this.bad(
        field,
        `expected a command: a string like "/usr/bin/systemctl start svc" or a list of arguments, got ${this.show(run)}`,
      );
      return undefined;
    }
    return {
      argv: argv as string[],
      timeoutMs: this.int(o.timeoutMs, join(field, "timeoutMs"), 1, 600_000, timeoutMs),
    };
  }
}

function join(base: string, key: string | number): string {
  return typeof key === "number" ? `${base}[${key}]` : base === "" ? key : `${base}.${key}`;
}

function readSelector(r: Reader, v: unknown, field: string): SelectorConfig {
  const o = r.obj(v, field);
  if (!o) return {};
  r.known(o, field, ["exePath", "buildId", "pid", "cgroup", "libraryPath"]);
  const sel: SelectorConfig = {};
  if (o.exePath !== undefined) sel.exePath = r.str(o.exePath, join(field, "exePath"));
  if (o.buildId !== undefined) {
    if (typeof o.buildId === "string" && /^[0-9a-f]{2,128}$/.test(o.buildId)) sel.buildId = o.buildId;
    else r.bad(join(field, "buildId"), `expected a lowercase hex build-id, got ${JSON.stringify(o.buildId)}`);
  }
  if (o.pid !== undefined) sel.pid = r.int(o.pid, join(field, "pid"), 1, 2 ** 22);
  if (o.cgroup !== undefined) sel.cgroup = r.str(o.cgroup, join(field, "cgroup"));
  if (o.libraryPath !== undefined) sel.libraryPath = r.str(o.libraryPath, join(field, "libraryPath"));
  if (Object.keys(sel).length === 0 && r.issues.every((i) => !i.field.startsWith(field))) {
    r.bad(
      field,
      "expected at least one of exePath, buildId, pid, cgroup, libraryPath (an empty selector matches nothing)",
    );
  }
  return sel;
}

function readProbe(r: Reader, v: unknown, field: string): ProbeConfig | undefined {
  const o = r.obj(v, field);
  if (!o) return undefined;
  r.known(o, field, ["name", "tcp", "http", "exec", "timeoutMs"]);
  const name = r.str(o.name, join(field, "name"));
  const timeoutMs = r.int(o.timeoutMs, join(field, "timeoutMs"), 1, 60_000, 1000);
  const kinds = (["tcp", "http", "exec"] as const).filter((k) => o[k] !== undefined);
  if (kinds.length !== 1) {
    r.bad(field, `expected exactly one of tcp, http, exec; got ${kinds.length === 0 ? "none" : kinds.join(" and ")}`);
    return undefined;
  }
  const kind = kinds[0];
  if (kind === "tcp") {
    const t = r.obj(o.tcp, join(field, "tcp"));
    if (!t) return undefined;
    r.known(t, join(field, "tcp"), ["host", "port"]);
    return {
      name,
      kind,
      host: r.str(t.host, join(field, "tcp.host"), "127.0.0.1"),
      port: r.int(t.port, join(field, "tcp.port"), 1, 65535),
      timeoutMs,
    };
  }
  if (kind === "http") {
    const h = r.obj(o.http, join(field, "http"));
    if (!h) return undefined;
    r.known(h, join(field, "http"), ["url", "expectStatus"]);
    const url = r.str(h.url, join(field, "http.url"));
    if (url && !/^https?:\/\//.test(url))
      r.bad(join(field, "http.url"), `expected an http:// or https:// URL, got "${url}"`);
    return {
      name,
      kind,
      url,
      expectStatus: r.int(h.expectStatus, join(field, "http.expectStatus"), 100, 599, 200),
      timeoutMs,
    };
  }
  const cmd = r.command(o.exec, join(field, "exec"), timeoutMs);
  return cmd ? { name, kind: "exec", argv: cmd.argv, timeoutMs } : undefined;
}

function readHooks(r: Reader, v: unknown, field: string): HooksConfig {
  const o = r.obj(v, field, false);
  if (!o) return {};
  r.known(o, field, ["promote", "demote", "timeoutMs"]);
  const timeoutMs = r.int(o.timeoutMs, join(field, "timeoutMs"), 1, 600_000, 10_000);
  const hooks: HooksConfig = {};
  const promote = r.command(o.promote, join(field, "promote"), timeoutMs);
  const demote = r.command(o.demote, join(field, "demote"), timeoutMs);
  if (promote) hooks.promote = promote;
  if (demote) hooks.demote = demote;
  return hooks;
}

function readRole(r: Reader, v: unknown, intervalMs: number): RoleSource {
  const o = r.obj(v, "role");
  const fallback: RoleSource = { source: "static", role: "standby", hooks: {} };
  if (!o) return fallback;
  const source = r.oneOf(o.source, "role.source", ["static", "external", "managed"] as const);
  const hooks = readHooks(r, o.hooks, "role.hooks");
  if (source === "static") {
    r.known(o, "role", ["source", "role", "hooks"]);
    return { source, role: r.oneOf(o.role, "role.role", ["active", "standby"] as const), hooks };
  }
  if (source === "external") {
    r.known(o, "role", ["source", "command", "file", "pollMs", "hooks"]);
    const command = r.command(o.command, "role.command", 2000);
    const file = o.file === undefined ? undefined : r.file(o.file, "role.file");
    if ((command === undefined) === (file === undefined) && o.command === undefined && o.file === undefined) {
      r.bad("role", "expected exactly one of command, file for source external");
    } else if (o.command !== undefined && o.file !== undefined) {
      r.bad("role", "expected exactly one of command, file for source external, got both");
    }
    const out: RoleSource = { source, pollMs: r.int(o.pollMs, "role.pollMs", 10, 60_000, intervalMs), hooks };
    if (command) out.command = command;
    if (file) out.file = file;
    return out;
  }
  r.known(o, "role", ["source", "leaseTtlMs", "renewMs", "demoteAfterMs", "bucket", "hooks"]);
  const leaseTtlMs = r.int(o.leaseTtlMs, "role.leaseTtlMs", 100, 600_000, 2000);
  const demoteAfterMs = r.int(o.demoteAfterMs, "role.demoteAfterMs", 50, 600_000, Math.floor(leaseTtlMs / 2));
  const renewMs = r.int(o.renewMs, "role.renewMs", 10, 600_000, Math.max(10, Math.floor(leaseTtlMs / 8)));
  if (demoteAfterMs >= leaseTtlMs) {
    r.bad(
      "role.demoteAfterMs",
      `expected less than role.leaseTtlMs (${leaseTtlMs}) so an active that cannot renew steps down before its peer may take over, got ${demoteAfterMs}`,
    );
  }
  if (renewMs * 2 > demoteAfterMs) {
    r.bad(
      "role.renewMs",
      `expected at most half of role.demoteAfterMs (${demoteAfterMs}) so one lost renewal does not demote, got ${renewMs}`,
    );
  }
  const bucket = r.str(o.bucket, "role.bucket", "hotpatch_roles");
  if (!/^[A-Za-z0-9_-]+$/.test(bucket))
    r.bad("role.bucket", `expected a KV bucket name (letters, digits, '-', '_'), got "${bucket}"`);
  return { source, leaseTtlMs, renewMs, demoteAfterMs, bucket, hooks };
}

/** The parts every scrape has: timeout, the allow-list of names, the sample cap. */
function readScrapeCommon(r: Reader, o: Obj, field: string) {
  const timeoutMs = r.int(o.timeoutMs, join(field, "timeoutMs"), 1, 60_000, 1000);
  const maxSamples = r.int(o.maxSamples, join(field, "maxSamples"), 1, 10_000, 100);
  let names: string[] | null = null;
  if (o.names !== undefined) {
    const list = r.list(o.names, join(field, "names"));
    if (Array.isArray(o.names) && list.length === 0)
      r.bad(join(field, "names"), "expected at least one metric name (leave names out to keep every sample)");
    names = list.map((n, i) => {
      if (typeof n === "string" && metricNameRe.test(n)) {
        if (list.indexOf(n) !== i)
          r.bad(join(join(field, "names"), i), `expected each name once, "${n}" is listed twice`);
        return n;
      }
      r.bad(
        join(join(field, "names"), i),
        `expected a Prometheus metric name (letters, digits, '_' and ':', not starting with a digit; labels are not part of it), got ${JSON.stringify(n)}`,
      );
      return "";
    });
  }
  return { timeoutMs, maxSamples, names };
}

function readScrape(r: Reader, kind: "http" | "exec", v: unknown, field: string): ScrapeConfig | undefined {
  const o = r.obj(v, field);
  if (!o) return undefined;
  if (kind === "http") {
    r.known(o, field, ["url", "timeoutMs", "names", "maxSamples"]);
    const url = r.str(o.url, join(field, "url"));
    if (url && !/^https?:\/\/[^\s/]+/.test(url))
      r.bad(join(field, "url"), `expected an http:// or https:// URL of a metrics page, got "${url}"`);
    return { kind, url, ...readScrapeCommon(r, o, field) };
  }
  r.known(o, field, ["run", "timeoutMs", "names", "maxSamples"]);
  const common = readScrapeCommon(r, o, field);
  const isMap = o.run !== null && typeof o.run === "object" && !Array.isArray(o.run);
  const cmd = isMap ? undefined : r.command(o.run, join(field, "run"), common.timeoutMs);
  if (o.run === undefined || isMap)
    r.bad(
      join(field, "run"),
      'expected the command to run: a string like "/usr/local/bin/stats --prom" or a list of arguments',
    );
  return cmd ? { kind, argv: cmd.argv, ...common } : undefined;
}

function readServiceMetrics(r: Reader, v: unknown, field: string): ServiceMetricsConfig {
  const o = r.obj(v, field, false) ?? {};
  r.known(o, field, ["intervalMs", "maxAgeMs", "process", "http", "exec"]);
  const intervalMs = r.int(o.intervalMs, join(field, "intervalMs"), 50, 600_000, 1000);
  const scrapes = (["http", "exec"] as const)
    .filter((k) => o[k] !== undefined)
    .map((k) => readScrape(r, k, o[k], join(field, k)))
    .filter((s): s is ScrapeConfig => s !== undefined);
  // A healthy source refreshes at least every interval + timeout; allow one late read on top.
  const slowest = intervalMs + Math.max(0, ...scrapes.map((s) => s.timeoutMs));
  const maxAgeMs = r.int(o.maxAgeMs, join(field, "maxAgeMs"), 1, 3_600_000, slowest + intervalMs);
  if (o.maxAgeMs !== undefined && maxAgeMs < slowest) {
    r.bad(
      join(field, "maxAgeMs"),
      `expected at least intervalMs + the longest timeoutMs (${slowest}), or every value would be dropped as stale before the next read; got ${maxAgeMs}`,
    );
  }
  return { intervalMs, maxAgeMs, process: r.bool(o.process, join(field, "process"), true), scrapes };
}

function readService(r: Reader, v: unknown, field: string): ServiceConfig | undefined {
  const o = r.obj(v, field);
  if (!o) return undefined;
  r.known(o, field, ["name", "process", "probes", "metrics"]);
  const probes = r
    .list(o.probes, join(field, "probes"), [])
    .map((p, i) => readProbe(r, p, join(join(field, "probes"), i)))
    .filter((p): p is ProbeConfig => p !== undefined);
  return {
    name: r.name(o.name, join(field, "name")),
    process: readSelector(r, o.process, join(field, "process")),
    probes,
    metrics: readServiceMetrics(r, o.metrics, join(field, "metrics")),
  };
}

function readSecurity(r: Reader, g: Obj): GrpcSecurity {
  const insecure = r.bool(g.insecure, "grpc.insecure", false);
  if (insecure) {
    if (g.tls !== undefined) r.bad("grpc.tls", "expected no tls section when grpc.insecure is true (pick one)");
    return { kind: "insecure" };
  }
  if (g.tls === undefined) {
    r.bad("grpc.tls", "mTLS is required: give ca, cert and key files, or set grpc.insecure: true for a lab");
    return { kind: "insecure" };
  }
  const t = r.obj(g.tls, "grpc.tls");
  if (!t) return { kind: "insecure" };
  r.known(t, "grpc.tls", ["ca", "cert", "key"]);
  return {
    kind: "mtls",
    files: {
      ca: r.file(t.ca, "grpc.tls.ca"),
      cert: r.file(t.cert, "grpc.tls.cert"),
      key: r.file(t.key, "grpc.tls.key"),
    },
  };
}

function readUploads(r: Reader, v: unknown, maxBundleBytes: number): UploadsConfig {
  const o = r.obj(v, "uploads", false) ?? {};
  r.known(o, "uploads", ["quotaBytes", "maxConcurrent"]);
  const quotaBytes = r.int(o.quotaBytes, "uploads.quotaBytes", 1024, 2 ** 50, Math.max(2 ** 30, maxBundleBytes));
  if (quotaBytes < maxBundleBytes)
    r.bad(
      "uploads.quotaBytes",
      `expected at least grpc.maxBundleBytes (${maxBundleBytes}), or a bundle of the largest accepted size could never be staged; got ${quotaBytes}`,
    );
  return { quotaBytes, maxConcurrent: r.int(o.maxConcurrent, "uploads.maxConcurrent", 1, 64, 2) };
}

function readAudit(r: Reader, v: unknown): AuditConfig {
  const o = r.obj(v, "audit", false) ?? {};
  r.known(o, "audit", ["fsync", "fsyncIntervalMs"]);
  return {
    fsync: r.oneOf(o.fsync, "audit.fsync", ["always", "interval", "never"] as const, "always"),
    fsyncIntervalMs: r.int(o.fsyncIntervalMs, "audit.fsyncIntervalMs", 10, 60_000, 1000),
  };
}

/** Validates an already-parsed configuration document. `source` names it in errors; relative paths resolve against `baseDir`. */
export function parseConfig(doc: unknown, source = "config", baseDir = process.cwd()): AgentConfig {
  const r = new Reader(baseDir);
  const o = r.obj(doc, "(top level)") ?? {};
  r.known(o, "", [
    "node",
    "pair",
    "cluster",
    "grpc",
    "nats",
    "heartbeat",
    "role",
    "services",
    "allow",
    "bundleDir",
    "uploads",
    "trustedKeys",
    "auditLog",
    "audit",
    "metrics",
    "debugDirs",
    "safetyTimeoutMs",
    "logLevel",
  ]);
  const g = r.obj(o.grpc, "grpc") ?? {};
  r.known(g, "grpc", ["listen", "tls", "insecure", "maxBundleBytes"]);
  const n = r.obj(o.nats, "nats") ?? {};
  r.known(n, "nats", ["servers"]);
  const servers = r.list(n.servers, "nats.servers").map((s, i) => {
    const f = `nats.servers[${i}]`;
    if (typeof s === "string" && /^(nats|tls):\/\/[^\s]+:\d+$/.test(s)) return s;
    r.bad(f, `expected a URL like nats://127.0.0.1:4222, got ${JSON.stringify(s)}`);
    return "";
  });
  if (Array.isArray(n.servers) && n.servers.length === 0) r.bad("nats.servers", "expected at least one server URL");
  const h = r.obj(o.heartbeat, "heartbeat", false) ?? {};
  r.known(h, "heartbeat", ["intervalMs", "peerLossBeats"]);
  const intervalMs = r.int(h.intervalMs, "heartbeat.intervalMs", 10, 60_000, 250);
  const allow = r.list(o.allow, "allow").map((p, i) => {
    if (typeof p === "string" && path.isAbsolute(p)) return p;
    r.bad(
      `allow[${i}]`,
      `expected an absolute path of an executable or library (or a directory ending in /), got ${JSON.stringify(p)}`,
    );
    return "";
  });
  const maxBundleBytes = r.int(g.maxBundleBytes, "grpc.maxBundleBytes", 1024, 2 ** 31, 64 * 1024 * 1024);
  const m = r.obj(o.metrics, "metrics", false);
  if (m) r.known(m, "metrics", ["listen"]);
  const debugDirs = r.list(o.debugDirs, "debugDirs", ["/usr/lib/debug"]).map((d, i) => r.file(d, `debugDirs[${i}]`));
  const config: AgentConfig = {
    source,
    node: r.name(o.node, "node"),
    pair: r.name(o.pair, "pair"),
    cluster: r.name(o.cluster, "cluster"),
    grpc: {
      listen: r.hostPort(g.listen, "grpc.listen"),
      security: readSecurity(r, g),
      maxBundleBytes,
    },
    natsServers: servers,
    heartbeat: { intervalMs, peerLossBeats: r.int(h.peerLossBeats, "heartbeat.peerLossBeats", 1, 1000, 4) },
    role: readRole(r, o.role, intervalMs),
    services: r
      .list(o.services, "services", [])
      .map((s, i) => readService(r, s, `services[${i}]`))
      .filter((s): s is ServiceConfig => s !== undefined),
    allow,
    bundleDir: r.file(o.bundleDir, "bundleDir"),
    uploads: readUploads(r, o.uploads, maxBundleBytes),
    trustedKeys: r.list(o.trustedKeys, "trustedKeys", []).map((k, i) => r.file(k, `trustedKeys[${i}]`)),
    auditLog: r.file(o.auditLog, "auditLog"),
    audit: readAudit(r, o.audit),
    metricsListen: m ? r.hostPort(m.listen, "metrics.listen") : null,
    debugDirs,
    safetyTimeoutMs: r.int(o.safetyTimeoutMs, "safetyTimeoutMs", 1, 600_000, 2000),
    logLevel: r.oneOf(o.logLevel, "logLevel", levels, "info"),
  };
  const names = config.services.map((s) => s.name);
  names.forEach((nm, i) => {
    if (names.indexOf(nm) !== i) r.bad(`services[${i}].name`, `expected a unique service name, "${nm}" is used twice`);
  });
  if (r.issues.length > 0) throw new ConfigError(source, r.issues);
  return config;
}

/** Reads and validates a YAML configuration file; relative paths in it resolve against its folder. */
export async function loadConfig(file: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [{ field: "(file)", message: `cannot read it: ${(err as Error).message}` }], {
      cause: err,
    });
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new ConfigError(file, [{ field: "(yaml)", message: `not valid YAML: ${(err as Error).message}` }], {
      cause: err,
    });
  }
  return parseConfig(doc, file, path.dirname(path.resolve(file)));
}
