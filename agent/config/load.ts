/** Reads the agent's YAML configuration and validates every field, reporting all bad fields at once. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "yaml";
import { FieldReader, fieldPath, type Mapping } from "../../common/index.js";
import { BUCKET_PATTERN, DEFAULT_ROLE_BUCKET, NAME_PATTERN, NAME_RULE } from "../../proto/index.js";
import { ConfigError } from "../errors.js";
import type {
  AgentConfig,
  CommandConfig,
  GrpcSecurity,
  HooksConfig,
  ProbeConfig,
  RoleSource,
  ScrapeConfig,
  SelectorConfig,
  ServiceConfig,
  ServiceMetricsConfig,
} from "./types.js";

const hostPortRe = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
/** A Prometheus metric name (it cannot hold a '.', so `<service>.proc.*` never collides with a scraped name). */
const metricNameRe = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const levels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** The agent's readers on top of the common ones: names, host:port, commands. */
class Reader extends FieldReader {
  name(v: unknown, field: string): string {
    return (
      this.matching(v, field, NAME_PATTERN, `a name of ${NAME_RULE} (it becomes a NATS subject token)`) ?? "invalid"
    );
  }

  hostPort(v: unknown, field: string, fallback?: string): string {
    const ok = (s: unknown) => {
      const m = typeof s === "string" ? hostPortRe.exec(s) : null;
      return m && Number(m[2]) <= 65535 ? (s as string) : null;
    };
    return (
      this.value(v, field, '"host:port" (e.g. 127.0.0.1:7443; port 0 picks a free one)', ok, fallback) ?? "127.0.0.1:0"
    );
  }

  /** A command as a list of strings, or one string split on spaces, or {run, timeoutMs}. */
  command(v: unknown, field: string, timeoutMs: number): CommandConfig | undefined {
    if (v === undefined) return undefined;
    const isMap = v !== null && typeof v === "object" && !Array.isArray(v);
    if (typeof v !== "string" && !Array.isArray(v) && !isMap)
      return this.expected(field, "a command: a string, a list of arguments, or {run, timeoutMs}", v);
    const o = isMap ? (v as Mapping) : { run: v };
    if (isMap) this.known(o, field, ["run", "timeoutMs"]);
    const run = o.run;
    const argv = typeof run === "string" ? run.split(/\s+/).filter(Boolean) : run;
    if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string" && a.length > 0)) {
      return this.expected(
        field,
        'a command: a string like "/usr/bin/systemctl start svc" or a list of arguments',
        run,
      );
    }
    return {
      argv: argv as string[],
      timeoutMs: this.int(o.timeoutMs, join(field, "timeoutMs"), 1, 600_000, timeoutMs) ?? timeoutMs,
    };
  }
}

const join = fieldPath;

function readSelector(r: Reader, v: unknown, field: string): SelectorConfig {
  const o = r.mapping(v, field);
  if (!o) return {};
  r.known(o, field, ["exePath", "buildId", "pid", "cgroup", "libraryPath"]);
  const sel: SelectorConfig = {};
  const set = <K extends keyof SelectorConfig>(key: K, value: SelectorConfig[K] | undefined) => {
    if (value !== undefined) sel[key] = value;
  };
  if (o.exePath !== undefined) set("exePath", r.string(o.exePath, join(field, "exePath")));
  if (o.buildId !== undefined)
    set("buildId", r.matching(o.buildId, join(field, "buildId"), /^[0-9a-f]{2,128}$/, "a lowercase hex build-id"));
  if (o.pid !== undefined) set("pid", r.int(o.pid, join(field, "pid"), 1, 2 ** 22));
  if (o.cgroup !== undefined) set("cgroup", r.string(o.cgroup, join(field, "cgroup")));
  if (o.libraryPath !== undefined) set("libraryPath", r.string(o.libraryPath, join(field, "libraryPath")));
  if (Object.keys(sel).length === 0 && r.issues.every((i) => !i.field.startsWith(field))) {
    r.bad(
      field,
      "expected at least one of exePath, buildId, pid, cgroup, libraryPath (an empty selector matches nothing)",
    );
  }
  return sel;
}

function readProbe(r: Reader, v: unknown, field: string): ProbeConfig | undefined {
  const o = r.mapping(v, field);
  if (!o) return undefined;
  r.known(o, field, ["name", "tcp", "http", "exec", "timeoutMs"]);
  const name = r.string(o.name, join(field, "name")) ?? "";
  const timeoutMs = r.int(o.timeoutMs, join(field, "timeoutMs"), 1, 60_000, 1000);
  const kinds = (["tcp", "http", "exec"] as const).filter((k) => o[k] !== undefined);
  if (kinds.length !== 1) {
    r.bad(field, `expected exactly one of tcp, http, exec; got ${kinds.length === 0 ? "none" : kinds.join(" and ")}`);
    return undefined;
  }
  const kind = kinds[0];
  if (kind === "tcp") {
    const t = r.mapping(o.tcp, join(field, "tcp"));
    if (!t) return undefined;
    r.known(t, join(field, "tcp"), ["host", "port"]);
    return {
      name,
      kind,
      host: r.string(t.host, join(field, "tcp.host"), "127.0.0.1"),
      port: r.int(t.port, join(field, "tcp.port"), 1, 65535) ?? 1,
      timeoutMs,
    };
  }
  if (kind === "http") {
    const h = r.mapping(o.http, join(field, "http"));
    if (!h) return undefined;
    r.known(h, join(field, "http"), ["url", "expectStatus"]);
    const url = r.string(h.url, join(field, "http.url")) ?? "";
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
  const o = v === undefined ? undefined : r.mapping(v, field);
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
  const o = r.mapping(v, "role");
  const fallback: RoleSource = { source: "static", role: "standby", hooks: {} };
  if (!o) return fallback;
  const source = r.oneOf(o.source, "role.source", ["static", "external", "managed"] as const) ?? "static";
  const hooks = readHooks(r, o.hooks, "role.hooks");
  if (source === "static") {
    r.known(o, "role", ["source", "role", "hooks"]);
    return { source, role: r.oneOf(o.role, "role.role", ["active", "standby"] as const) ?? "active", hooks };
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
  const bucket = r.string(o.bucket, "role.bucket", DEFAULT_ROLE_BUCKET);
  if (!BUCKET_PATTERN.test(bucket))
    r.bad("role.bucket", `expected a KV bucket name (letters, digits, '-', '_'), got "${bucket}"`);
  return { source, leaseTtlMs, renewMs, demoteAfterMs, bucket, hooks };
}

/** The parts every scrape has: timeout, the allow-list of names, the sample cap. */
function readScrapeCommon(r: Reader, o: Mapping, field: string) {
  const timeoutMs = r.int(o.timeoutMs, join(field, "timeoutMs"), 1, 60_000, 1000);
  const maxSamples = r.int(o.maxSamples, join(field, "maxSamples"), 1, 10_000, 100);
  let names: string[] | null = null;
  if (o.names !== undefined) {
    const list = r.list(o.names, join(field, "names")) ?? [];
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
  const o = r.mapping(v, field);
  if (!o) return undefined;
  if (kind === "http") {
    r.known(o, field, ["url", "timeoutMs", "names", "maxSamples"]);
    const url = r.string(o.url, join(field, "url")) ?? "";
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
  const o = (v === undefined ? undefined : r.mapping(v, field)) ?? {};
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
  const o = r.mapping(v, field);
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

function readSecurity(r: Reader, g: Mapping): GrpcSecurity {
  const tls = r.tls(g, "grpc");
  return tls === "insecure" ? { kind: "insecure" } : { kind: "mtls", files: tls };
}

/** Validates an already-parsed configuration document. `source` names it in errors; relative paths resolve against `baseDir`. */
export function parseConfig(doc: unknown, source = "config", baseDir = process.cwd()): AgentConfig {
  const r = new Reader(baseDir);
  const o = r.mapping(doc, "(top level)") ?? {};
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
    "trustedKeys",
    "auditLog",
    "metrics",
    "debugDirs",
    "safetyTimeoutMs",
    "logLevel",
  ]);
  const g = r.mapping(o.grpc, "grpc") ?? {};
  r.known(g, "grpc", ["listen", "tls", "insecure", "maxBundleBytes"]);
  const n = r.mapping(o.nats, "nats") ?? {};
  r.known(n, "nats", ["servers"]);
  const servers = (r.list(n.servers, "nats.servers") ?? []).map((s, i) => {
    const f = `nats.servers[${i}]`;
    if (typeof s === "string" && /^(nats|tls):\/\/[^\s]+:\d+$/.test(s)) return s;
    r.bad(f, `expected a URL like nats://127.0.0.1:4222, got ${JSON.stringify(s)}`);
    return "";
  });
  if (Array.isArray(n.servers) && n.servers.length === 0) r.bad("nats.servers", "expected at least one server URL");
  const h = (o.heartbeat === undefined ? undefined : r.mapping(o.heartbeat, "heartbeat")) ?? {};
  r.known(h, "heartbeat", ["intervalMs", "peerLossBeats"]);
  const intervalMs = r.int(h.intervalMs, "heartbeat.intervalMs", 10, 60_000, 250);
  const allow = (r.list(o.allow, "allow") ?? []).map((p, i) => {
    if (typeof p === "string" && path.isAbsolute(p)) return p;
    r.bad(
      `allow[${i}]`,
      `expected an absolute path of an executable or library (or a directory ending in /), got ${JSON.stringify(p)}`,
    );
    return "";
  });
  const m = o.metrics === undefined ? undefined : r.mapping(o.metrics, "metrics");
  if (m) r.known(m, "metrics", ["listen"]);
  const debugDirs = r
    .list(o.debugDirs, "debugDirs", ["/usr/lib/debug"])
    .map((d, i) => r.file(d, `debugDirs[${i}]`) ?? "");
  const config: AgentConfig = {
    source,
    node: r.name(o.node, "node"),
    pair: r.name(o.pair, "pair"),
    cluster: r.name(o.cluster, "cluster"),
    grpc: {
      listen: r.hostPort(g.listen, "grpc.listen"),
      security: readSecurity(r, g),
      maxBundleBytes: r.int(g.maxBundleBytes, "grpc.maxBundleBytes", 1024, 2 ** 31, 64 * 1024 * 1024),
    },
    natsServers: servers,
    heartbeat: { intervalMs, peerLossBeats: r.int(h.peerLossBeats, "heartbeat.peerLossBeats", 1, 1000, 4) },
    role: readRole(r, o.role, intervalMs),
    services: r
      .list(o.services, "services", [])
      .map((s, i) => readService(r, s, `services[${i}]`))
      .filter((s): s is ServiceConfig => s !== undefined),
    allow,
    bundleDir: r.file(o.bundleDir, "bundleDir") ?? "",
    trustedKeys: r.list(o.trustedKeys, "trustedKeys", []).map((k, i) => r.file(k, `trustedKeys[${i}]`) ?? ""),
    auditLog: r.file(o.auditLog, "auditLog") ?? "",
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
