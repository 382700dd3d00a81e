/**
 * Reading a rollout plan from YAML. Every field is checked and every problem is reported at once,
 * each naming its field, so one run of `--dry-run` shows all that must be fixed.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseDocument } from "yaml";
import { NAME_PATTERN } from "../../proto/index.js";
import { parseDuration } from "./duration.js";
import { PlanError, type PlanIssue, RolloutError } from "./errors.js";
import type {
  AgentEndpoints,
  AgentSecurity,
  CanaryStage,
  FailurePolicy,
  GateMode,
  Gates,
  MetricGate,
  MetricOp,
  Order,
  PlainGate,
  Plan,
  TargetSelector,
  Waves,
} from "./plan_types.js";

type Json = Record<string, unknown>;

const ORDERS: readonly Order[] = ["standby-first", "switchover"];
const POLICIES: readonly FailurePolicy[] = ["rollback-pair", "rollback-all", "pause"];
const MODES: readonly GateMode[] = ["enforce", "observe"];
const OPS: readonly MetricOp[] = ["<", "<=", ">", ">=", "==", "!="];
const ADDRESS = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;
const BUILD_ID = /^(?:[0-9a-f]{2}){4,64}$/;

const DEFAULTS = {
  progressDeadlineMs: 10 * 60_000,
  callTimeoutMs: 60_000,
  discoveryMs: 2000,
  heartbeatGapIntervals: 3,
};

/** Collects issues while the plan is read. */
class Checker {
  readonly issues: PlanIssue[] = [];

  bad(field: string, message: string): undefined {
    this.issues.push({ field, message });
    return undefined;
  }

  object(value: unknown, field: string, allowed: readonly string[]): Json | undefined {
    if (typeof value !== "object" || value === null || Array.isArray(value))
      return this.bad(field, "must be a mapping");
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key))
        this.bad(field ? `${field}.${key}` : key, `unknown field (allowed: ${allowed.join(", ")})`);
    }
    return value as Json;
  }

  string(value: unknown, field: string): string | undefined {
    if (typeof value !== "string" || value.length === 0) return this.bad(field, "must be a non-empty string");
    return value;
  }

  name(value: unknown, field: string): string | undefined {
    const s = this.string(value, field);
    if (s !== undefined && !NAME_PATTERN.test(s)) return this.bad(field, "must be 1 to 64 letters, digits, '_' or '-'");
    return s;
  }

  int(value: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      return this.bad(
        field,
        `must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : " up"}`,
      );
    }
    return value;
  }

  duration(value: unknown, field: string): number | undefined {
    const ms = parseDuration(value);
    if (ms === null) return this.bad(field, "must be a duration such as 250ms, 30s, 5m or 1h30m");
    return ms;
  }

  oneOf<T extends string>(value: unknown, field: string, choices: readonly T[]): T | undefined {
    if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) {
      return this.bad(field, `must be one of ${choices.join(", ")}`);
    }
    return value as T;
  }

  file(value: unknown, field: string, base: string): string | undefined {
    const s = this.string(value, field);
    return s === undefined ? undefined : path.resolve(base, s);
  }
}

function readGates(c: Checker, raw: unknown): Gates {
  const gates: Gates = {
    heartbeatGap: { mode: "enforce", intervals: DEFAULTS.heartbeatGapIntervals },
    probes: { mode: "enforce" },
    noRestart: { mode: "enforce" },
    patchActive: { mode: "enforce" },
    metrics: [],
  };
  if (raw === undefined) return gates;
  const g = c.object(raw, "gates", ["heartbeatGap", "probes", "noRestart", "patchActive", "metrics"]);
  if (!g) return gates;
  const mode = (v: unknown, field: string): GateMode =>
    v === undefined ? "enforce" : (c.oneOf(v, field, MODES) ?? "enforce");
  if (g.heartbeatGap === false) gates.heartbeatGap = null;
  else if (g.heartbeatGap !== undefined) {
    const o = c.object(g.heartbeatGap, "gates.heartbeatGap", ["intervals", "mode"]);
    if (o) {
      gates.heartbeatGap = {
        mode: mode(o.mode, "gates.heartbeatGap.mode"),
        intervals:
          o.intervals === undefined
            ? DEFAULTS.heartbeatGapIntervals
            : (c.int(o.intervals, "gates.heartbeatGap.intervals", 1, 1000) ?? DEFAULTS.heartbeatGapIntervals),
      };
    }
  }
  for (const key of ["probes", "noRestart", "patchActive"] as const) {
    const v = g[key];
    if (v === undefined) continue;
    if (v === false) {
      gates[key] = null;
      continue;
    }
    if (v === true) continue;
    const o = c.object(v, `gates.${key}`, ["mode"]);
    if (o) gates[key] = { mode: mode(o.mode, `gates.${key}.mode`) } satisfies PlainGate;
  }
  if (g.metrics !== undefined) {
    if (!Array.isArray(g.metrics)) c.bad("gates.metrics", "must be a list of {name, op, value, mode}");
    else {
      g.metrics.forEach((m, i) => {
        const field = `gates.metrics[${i}]`;
        const o = c.object(m, field, ["name", "op", "value", "mode"]);
        if (!o) return;
        const name = c.string(o.name, `${field}.name`);
        const op = c.oneOf(o.op, `${field}.op`, OPS);
        const value =
          typeof o.value === "number" && Number.isFinite(o.value)
            ? o.value
            : c.bad(`${field}.value`, "must be a finite number");
        const gateMode = mode(o.mode, `${field}.mode`);
        if (name !== undefined && op !== undefined && value !== undefined) {
          gates.metrics.push({ name, op, value, mode: gateMode } satisfies MetricGate);
        }
      });
    }
  }
  return gates;
}

function readSecurity(c: Checker, a: Json, base: string): AgentSecurity {
  const hasTls = a.tls !== undefined;
  if (a.insecure === true && hasTls) {
    c.bad("agents", "give either tls or insecure: true, not both");
    return { kind: "insecure" };
  }
  if (a.insecure !== undefined && typeof a.insecure !== "boolean") c.bad("agents.insecure", "must be true or false");
  if (a.insecure === true) return { kind: "insecure" };
  if (!hasTls) {
    c.bad("agents.tls", "is required (ca, cert, key files) unless agents.insecure is true");
    return { kind: "insecure" };
  }
  const t = c.object(a.tls, "agents.tls", ["ca", "cert", "key"]);
  const ca = c.file(t?.ca, "agents.tls.ca", base);
  const cert = c.file(t?.cert, "agents.tls.cert", base);
  const key = c.file(t?.key, "agents.tls.key", base);
  return { kind: "mtls", ca: ca ?? "", cert: cert ?? "", key: key ?? "" };
}

function readAgents(c: Checker, raw: unknown, base: string): AgentEndpoints {
  const out: AgentEndpoints = { security: { kind: "insecure" }, nodes: {}, callTimeoutMs: DEFAULTS.callTimeoutMs };
  const a = c.object(raw, "agents", ["tls", "insecure", "nodes", "callTimeout"]);
  if (!a) return out;
  out.security = readSecurity(c, a, base);
  if (a.callTimeout !== undefined) out.callTimeoutMs = c.duration(a.callTimeout, "agents.callTimeout") ?? 0;
  if (a.nodes !== undefined) {
    const nodes = c.object(a.nodes, "agents.nodes", Object.keys(a.nodes ?? {}));
    for (const [node, addr] of Object.entries(nodes ?? {})) {
      if (!NAME_PATTERN.test(node)) c.bad(`agents.nodes.${node}`, "node name must be letters, digits, '_' or '-'");
      else if (typeof addr !== "string" || !ADDRESS.test(addr)) c.bad(`agents.nodes.${node}`, "must be host:port");
      else out.nodes[node] = addr;
    }
  }
  return out;
}

function readTarget(c: Checker, raw: unknown): TargetSelector {
  const t = c.object(raw, "target", ["exePath", "buildId", "cgroup", "libraryPath"]);
  const out: TargetSelector = {};
  if (!t) return out;
  for (const key of ["exePath", "cgroup", "libraryPath"] as const) {
    if (t[key] === undefined) continue;
    const s = c.string(t[key], `target.${key}`);
    if (s !== undefined && !s.startsWith("/")) c.bad(`target.${key}`, "must be an absolute path");
    else if (s !== undefined) out[key] = s;
  }
  if (t.buildId !== undefined) {
    if (typeof t.buildId !== "string" || !BUILD_ID.test(t.buildId)) c.bad("target.buildId", "must be lowercase hex");
    else out.buildId = t.buildId;
  }
  if (Object.keys(out).length === 0 && Object.keys(t).length === 0) {
    c.bad(
      "target",
      "must set at least one of exePath, buildId, cgroup, libraryPath (an empty selector matches nothing)",
    );
  }
  return out;
}

/** Checks a parsed YAML document and returns the plan, or throws PlanError listing every bad field. */
export function validatePlan(doc: unknown, source: string, baseDir: string): Plan {
  const c = new Checker();
  const allowed = [
    "cluster",
    "nats",
    "bundle",
    "target",
    "pairs",
    "order",
    "canary",
    "waves",
    "gates",
    "failurePolicy",
    "progressDeadline",
    "agents",
    "consistency",
    "discovery",
  ];
  const root = c.object(doc, "", allowed);
  if (!root) throw new PlanError(source, c.issues);
  for (const key of ["cluster", "bundle", "target", "agents"]) {
    if (root[key] === undefined) c.bad(key, "is required");
  }
  const cluster = root.cluster === undefined ? "" : (c.name(root.cluster, "cluster") ?? "");
  let natsServers = ["nats://127.0.0.1:4222"];
  if (root.nats !== undefined) {
    const n = c.object(root.nats, "nats", ["servers"]);
    if (n && (!Array.isArray(n.servers) || n.servers.length === 0 || !n.servers.every((s) => typeof s === "string")))
      c.bad("nats.servers", "must be a non-empty list of URLs such as nats://host:4222");
    else if (n) natsServers = n.servers as string[];
  }
  const bundle = root.bundle === undefined ? "" : (c.file(root.bundle, "bundle", baseDir) ?? "");
  const target = root.target === undefined ? {} : readTarget(c, root.target);
  let pairs: Plan["pairs"] = "all";
  if (root.pairs !== undefined && root.pairs !== "all") {
    if (!Array.isArray(root.pairs) || root.pairs.length === 0)
      c.bad("pairs", "must be `all` or a non-empty list of pair names");
    else {
      pairs = root.pairs.map((p, i) => c.name(p, `pairs[${i}]`) ?? "");
      if (new Set(pairs).size !== pairs.length) c.bad("pairs", "lists a pair twice");
    }
  }
  const order = root.order === undefined ? "standby-first" : (c.oneOf(root.order, "order", ORDERS) ?? "standby-first");
  const canary: CanaryStage = { pairs: 1, soakMs: 60_000 };
  if (root.canary !== undefined) {
    const o = c.object(root.canary, "canary", ["pairs", "soak"]);
    if (o?.pairs !== undefined) {
      if (Array.isArray(o.pairs)) canary.pairs = o.pairs.map((p, i) => c.name(p, `canary.pairs[${i}]`) ?? "");
      else canary.pairs = c.int(o.pairs, "canary.pairs", 0) ?? 1;
    }
    if (o?.soak !== undefined) canary.soakMs = c.duration(o.soak, "canary.soak") ?? 0;
  }
  const waves: Waves = { size: 10, maxParallel: 5, soakMs: 30_000 };
  if (root.waves !== undefined) {
    const o = c.object(root.waves, "waves", ["size", "maxParallel", "soak"]);
    if (o?.size !== undefined) waves.size = c.int(o.size, "waves.size", 1) ?? 1;
    if (o?.maxParallel !== undefined) waves.maxParallel = c.int(o.maxParallel, "waves.maxParallel", 1, 1000) ?? 1;
    if (o?.soak !== undefined) waves.soakMs = c.duration(o.soak, "waves.soak") ?? 0;
    if (waves.maxParallel > waves.size) c.bad("waves.maxParallel", `must not exceed waves.size (${waves.size})`);
  }
  const gates = readGates(c, root.gates);
  const failurePolicy =
    root.failurePolicy === undefined
      ? "rollback-pair"
      : (c.oneOf(root.failurePolicy, "failurePolicy", POLICIES) ?? "rollback-pair");
  const progressDeadlineMs =
    root.progressDeadline === undefined
      ? DEFAULTS.progressDeadlineMs
      : (c.duration(root.progressDeadline, "progressDeadline") ?? DEFAULTS.progressDeadlineMs);
  const longestSoak = Math.max(canary.soakMs, waves.soakMs);
  if (progressDeadlineMs <= longestSoak) {
    c.bad("progressDeadline", `must be longer than the longest soak (${longestSoak} ms), or every soak would abort`);
  }
  const agents =
    root.agents === undefined ? readAgents(new Checker(), {}, baseDir) : readAgents(c, root.agents, baseDir);
  const consistency =
    root.consistency === undefined
      ? "strict"
      : (c.oneOf(root.consistency, "consistency", ["strict", "entry"]) ?? "strict");
  const discoveryMs =
    root.discovery === undefined
      ? DEFAULTS.discoveryMs
      : (c.duration(root.discovery, "discovery") ?? DEFAULTS.discoveryMs);
  if (Array.isArray(canary.pairs) && Array.isArray(pairs)) {
    const listed = pairs;
    canary.pairs.forEach((p, i) => {
      if (!listed.includes(p)) c.bad(`canary.pairs[${i}]`, `pair ${p} is not in pairs`);
    });
  }
  if (c.issues.length > 0) throw new PlanError(source, c.issues);
  return {
    source,
    cluster,
    natsServers,
    bundle,
    target,
    pairs,
    order,
    canary,
    waves,
    gates,
    failurePolicy,
    progressDeadlineMs,
    agents,
    consistency,
    discoveryMs,
  };
}

/** Parses plan YAML text; `baseDir` resolves relative file paths. */
export function parsePlan(text: string, source: string, baseDir: string): Plan {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new PlanError(
      source,
      doc.errors.map((e) => ({
        field: `(yaml line ${e.linePos?.[0]?.line ?? "?"})`,
        message: e.message.split("\n")[0] ?? "",
      })),
    );
  }
  return validatePlan(doc.toJS(), source, baseDir);
}

/** Reads and validates a plan file. */
export async function loadPlan(file: string): Promise<Plan> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (cause) {
    throw new RolloutError("EPLAN_READ", `cannot read plan ${file}: ${(cause as Error).message}`, { file }, { cause });
  }
  return parsePlan(text, file, path.dirname(path.resolve(file)));
}
