/**
 * Reading a rollout plan from YAML. Every field is checked and every problem is reported at once,
 * each naming its field, so one run of `--dry-run` shows all that must be fixed.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseDocument } from "yaml";
import { FieldReader, type Mapping } from "../../common/index.js";
import { NAME_PATTERN, NAME_RULE } from "../../proto/index.js";
import { parseDuration } from "./duration.js";
import { PlanError, RolloutError } from "./errors.js";
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

/** The plan's readers on top of the common ones: names and durations. */
class Checker extends FieldReader {
  name(value: unknown, field: string): string | undefined {
    return this.matching(value, field, NAME_PATTERN, `a name of ${NAME_RULE}`);
  }

  duration(value: unknown, field: string): number | undefined {
    return this.value(value, field, "a duration such as 250ms, 30s, 5m or 1h30m", parseDuration);
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
  const g = c.mapping(raw, "gates", ["heartbeatGap", "probes", "noRestart", "patchActive", "metrics"]);
  if (!g) return gates;
  const mode = (v: unknown, field: string): GateMode =>
    v === undefined ? "enforce" : (c.oneOf(v, field, MODES) ?? "enforce");
  if (g.heartbeatGap === false) gates.heartbeatGap = null;
  else if (g.heartbeatGap !== undefined) {
    const o = c.mapping(g.heartbeatGap, "gates.heartbeatGap", ["intervals", "mode"]);
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
    const o = c.mapping(v, `gates.${key}`, ["mode"]);
    if (o) gates[key] = { mode: mode(o.mode, `gates.${key}.mode`) } satisfies PlainGate;
  }
  if (g.metrics !== undefined) {
    if (!Array.isArray(g.metrics)) c.expected("gates.metrics", "a list of {name, op, value, mode}", g.metrics);
    else {
      g.metrics.forEach((m, i) => {
        const field = `gates.metrics[${i}]`;
        const o = c.mapping(m, field, ["name", "op", "value", "mode"]);
        if (!o) return;
        const name = c.string(o.name, `${field}.name`);
        const op = c.oneOf(o.op, `${field}.op`, OPS);
        const value = c.number(o.value, `${field}.value`);
        const gateMode = mode(o.mode, `${field}.mode`);
        if (name !== undefined && op !== undefined && value !== undefined) {
          gates.metrics.push({ name, op, value, mode: gateMode } satisfies MetricGate);
        }
      });
    }
  }
  return gates;
}

function readSecurity(c: Checker, a: Mapping): AgentSecurity {
  const tls = c.tls(a, "agents", "agents");
  return tls === "insecure" ? { kind: "insecure" } : { kind: "mtls", ...tls };
}

function readAgents(c: Checker, raw: unknown): AgentEndpoints {
  const out: AgentEndpoints = { security: { kind: "insecure" }, nodes: {}, callTimeoutMs: DEFAULTS.callTimeoutMs };
  const a = c.mapping(raw, "agents", ["tls", "insecure", "nodes", "callTimeout"]);
  if (!a) return out;
  out.security = readSecurity(c, a);
  if (a.callTimeout !== undefined) out.callTimeoutMs = c.duration(a.callTimeout, "agents.callTimeout") ?? 0;
  if (a.nodes !== undefined) {
    const nodes = c.mapping(a.nodes, "agents.nodes", Object.keys(a.nodes ?? {}));
    for (const [node, addr] of Object.entries(nodes ?? {})) {
      if (!NAME_PATTERN.test(node)) c.expected(`agents.nodes.${node}`, `a node name of ${NAME_RULE}`, node);
      else {
        const address = c.matching(addr, `agents.nodes.${node}`, ADDRESS, "host:port");
        if (address !== undefined) out.nodes[node] = address;
      }
    }
  }
  return out;
}

function readTarget(c: Checker, raw: unknown): TargetSelector {
  const t = c.mapping(raw, "target", ["exePath", "buildId", "cgroup", "libraryPath"]);
  const out: TargetSelector = {};
  if (!t) return out;
  for (const key of ["exePath", "cgroup", "libraryPath"] as const) {
    if (t[key] === undefined) continue;
    const s = c.string(t[key], `target.${key}`);
    if (s !== undefined && !s.startsWith("/")) c.expected(`target.${key}`, "an absolute path", s);
    else if (s !== undefined) out[key] = s;
  }
  if (t.buildId !== undefined) {
    const buildId = c.matching(t.buildId, "target.buildId", BUILD_ID, "a lowercase hex build-id");
    if (buildId !== undefined) out.buildId = buildId;
  }
  if (Object.keys(out).length === 0 && Object.keys(t).length === 0) {
    c.bad(
      "target",
      "expected at least one of exePath, buildId, cgroup, libraryPath (an empty selector matches nothing)",
    );
  }
  return out;
}

/** Checks a parsed YAML document and returns the plan, or throws PlanError listing every bad field. */
export function validatePlan(doc: unknown, source: string, baseDir: string): Plan {
  const c = new Checker(baseDir);
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
  const root = c.mapping(doc, "", allowed);
  if (!root) throw new PlanError(source, c.issues);
  c.required(root, ["cluster", "bundle", "target", "agents"]);
  const cluster = root.cluster === undefined ? "" : (c.name(root.cluster, "cluster") ?? "");
  let natsServers = ["nats://127.0.0.1:4222"];
  if (root.nats !== undefined) {
    const n = c.mapping(root.nats, "nats", ["servers"]);
    if (n && (!Array.isArray(n.servers) || n.servers.length === 0 || !n.servers.every((s) => typeof s === "string")))
      c.expected("nats.servers", "a non-empty list of URLs such as nats://host:4222", n.servers);
    else if (n) natsServers = n.servers as string[];
  }
  const bundle = root.bundle === undefined ? "" : (c.file(root.bundle, "bundle") ?? "");
  const target = root.target === undefined ? {} : readTarget(c, root.target);
  let pairs: Plan["pairs"] = "all";
  if (root.pairs !== undefined && root.pairs !== "all") {
    if (!Array.isArray(root.pairs) || root.pairs.length === 0)
      c.expected("pairs", "`all` or a non-empty list of pair names", root.pairs);
    else {
      pairs = root.pairs.map((p, i) => c.name(p, `pairs[${i}]`) ?? "");
      if (new Set(pairs).size !== pairs.length) c.bad("pairs", "expected each pair once, one is listed twice");
    }
  }
  const order = root.order === undefined ? "standby-first" : (c.oneOf(root.order, "order", ORDERS) ?? "standby-first");
  const canary: CanaryStage = { pairs: 1, soakMs: 60_000 };
  if (root.canary !== undefined) {
    const o = c.mapping(root.canary, "canary", ["pairs", "soak"]);
    if (o?.pairs !== undefined) {
      if (Array.isArray(o.pairs)) canary.pairs = o.pairs.map((p, i) => c.name(p, `canary.pairs[${i}]`) ?? "");
      else canary.pairs = c.int(o.pairs, "canary.pairs", 0) ?? 1;
    }
    if (o?.soak !== undefined) canary.soakMs = c.duration(o.soak, "canary.soak") ?? 0;
  }
  const waves: Waves = { size: 10, maxParallel: 5, soakMs: 30_000 };
  if (root.waves !== undefined) {
    const o = c.mapping(root.waves, "waves", ["size", "maxParallel", "soak"]);
    if (o?.size !== undefined) waves.size = c.int(o.size, "waves.size", 1) ?? 1;
    if (o?.maxParallel !== undefined) waves.maxParallel = c.int(o.maxParallel, "waves.maxParallel", 1, 1000) ?? 1;
    if (o?.soak !== undefined) waves.soakMs = c.duration(o.soak, "waves.soak") ?? 0;
    if (waves.maxParallel > waves.size)
      c.expected("waves.maxParallel", `at most waves.size (${waves.size})`, waves.maxParallel);
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
    c.bad(
      "progressDeadline",
      `expected longer than the longest soak (${longestSoak} ms), or every soak would abort; got ${progressDeadlineMs} ms`,
    );
  }
  const agents = root.agents === undefined ? readAgents(new Checker(baseDir), {}) : readAgents(c, root.agents);
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
      if (!listed.includes(p)) c.expected(`canary.pairs[${i}]`, "a pair listed in pairs", p);
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
