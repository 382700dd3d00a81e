/** Rollout plans: a good plan reads into typed fields; each bad field is named in the error. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PlanError, parsePlan } from "../../../controller/rollout/index.js";

const good = `
cluster: prod-east
nats: {servers: ["nats://10.0.0.5:4222"]}
bundle: bundles/fix-123
target: {exePath: /usr/sbin/smsc}
pairs: [p1, p2, p3]
order: switchover
canary: {pairs: [p2], soak: 1m30s}
waves: {size: 2, maxParallel: 2, soak: 20s}
gates:
  heartbeatGap: {intervals: 4}
  probes: {mode: enforce}
  noRestart: {mode: observe}
  patchActive: false
  metrics:
    - {name: error_rate, op: "<", value: 0.01}
    - {name: p99_ms, op: "<=", value: 250, mode: observe}
failurePolicy: rollback-all
progressDeadline: 10m
agents:
  tls: {ca: certs/ca.pem, cert: certs/ctl.pem, key: certs/ctl.key}
  nodes: {p1-a: "10.0.1.1:7443"}
`;

function issues(yaml: string): { field: string; message: string }[] {
  try {
    parsePlan(yaml, "plan.yaml", "/etc/hotpatch");
  } catch (err) {
    assert.ok(err instanceof PlanError, `expected PlanError, got ${err}`);
    assert.equal(err.code, "EPLAN_INVALID");
    return err.issues;
  }
  assert.fail("plan was accepted");
}

/** The good plan with one top-level key replaced (or removed when value is undefined). */
function withKey(key: string, value: string | undefined): string {
  const lines = good.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`${key}:`));
  assert.ok(start >= 0, key);
  let end = start + 1;
  while (end < lines.length && /^\s+/.test(lines[end] ?? "")) end++;
  lines.splice(start, end - start, ...(value === undefined ? [] : [`${key}: ${value}`]));
  return lines.join("\n");
}

describe("rollout plan", () => {
  it("a good plan reads into typed fields with durations in ms and paths resolved", () => {
    const p = parsePlan(good, "plan.yaml", "/etc/hotpatch");
    assert.equal(p.cluster, "prod-east");
    assert.equal(p.bundle, "/etc/hotpatch/bundles/fix-123");
    assert.deepEqual(p.target, { exePath: "/usr/sbin/smsc" });
    assert.deepEqual(p.pairs, ["p1", "p2", "p3"]);
    assert.equal(p.order, "switchover");
    assert.deepEqual(p.canary, { pairs: ["p2"], soakMs: 90_000 });
    assert.deepEqual(p.waves, { size: 2, maxParallel: 2, soakMs: 20_000 });
    assert.deepEqual(p.gates.heartbeatGap, { mode: "enforce", intervals: 4 });
    assert.deepEqual(p.gates.noRestart, { mode: "observe" });
    assert.equal(p.gates.patchActive, null);
    assert.deepEqual(p.gates.metrics[1], { name: "p99_ms", op: "<=", value: 250, mode: "observe" });
    assert.equal(p.failurePolicy, "rollback-all");
    assert.equal(p.progressDeadlineMs, 600_000);
    assert.deepEqual(p.agents.security, {
      kind: "mtls",
      ca: "/etc/hotpatch/certs/ca.pem",
      cert: "/etc/hotpatch/certs/ctl.pem",
      key: "/etc/hotpatch/certs/ctl.key",
    });
    assert.equal(p.agents.nodes["p1-a"], "10.0.1.1:7443");
  });

  const cases: [string, string, string | undefined, RegExp][] = [
    ["missing cluster", "cluster", undefined, /^cluster$/],
    ["cluster with a dot", "cluster", "prod.east", /^cluster$/],
    ["missing bundle", "bundle", undefined, /^bundle$/],
    ["missing target", "target", undefined, /^target$/],
    ["empty target", "target", "{}", /^target$/],
    ["relative exePath", "target", "{exePath: smsc}", /^target\.exePath$/],
    ["bad buildId", "target", "{buildId: XYZ}", /^target\.buildId$/],
    ["pairs not a list", "pairs", "3", /^pairs$/],
    ["a pair listed twice", "pairs", "[p1, p1, p2]", /^pairs$/],
    ["unknown order", "order", "active-first", /^order$/],
    ["canary pair not in pairs", "canary", "{pairs: [p9], soak: 1m}", /^canary\.pairs\[0\]$/],
    ["bad canary soak", "canary", "{pairs: 1, soak: soon}", /^canary\.soak$/],
    ["negative canary count", "canary", "{pairs: -1, soak: 1m}", /^canary\.pairs$/],
    ["zero wave size", "waves", "{size: 0, maxParallel: 1, soak: 1s}", /^waves\.size$/],
    ["maxParallel above size", "waves", "{size: 2, maxParallel: 5, soak: 1s}", /^waves\.maxParallel$/],
    ["fractional maxParallel", "waves", "{size: 4, maxParallel: 1.5, soak: 1s}", /^waves\.maxParallel$/],
    ["unknown gate", "gates", "{latency: {mode: enforce}}", /^gates\.latency$/],
    ["bad gate mode", "gates", "{probes: {mode: maybe}}", /^gates\.probes\.mode$/],
    ["zero heartbeat intervals", "gates", "{heartbeatGap: {intervals: 0}}", /^gates\.heartbeatGap\.intervals$/],
    ["metric without name", "gates", "{metrics: [{op: '<', value: 1}]}", /^gates\.metrics\[0\]\.name$/],
    ["metric with bad op", "gates", "{metrics: [{name: x, op: '=~', value: 1}]}", /^gates\.metrics\[0\]\.op$/],
    ["metric with text value", "gates", "{metrics: [{name: x, op: '<', value: low}]}", /^gates\.metrics\[0\]\.value$/],
    ["unknown failure policy", "failurePolicy", "retry", /^failurePolicy$/],
    ["deadline not a duration", "progressDeadline", "ten minutes", /^progressDeadline$/],
    ["deadline shorter than a soak", "progressDeadline", "30s", /^progressDeadline$/],
    ["agents without tls or insecure", "agents", "{nodes: {}}", /^agents\.tls$/],
    ["agents with tls and insecure", "agents", "{insecure: true, tls: {ca: a, cert: b, key: c}}", /^agents$/],
    ["tls without key", "agents", "{tls: {ca: a, cert: b}}", /^agents\.tls\.key$/],
    ["node address without port", "agents", "{insecure: true, nodes: {p1-a: host}}", /^agents\.nodes\.p1-a$/],
    ["unknown top-level field", "order", "standby-first\ncolour: blue", /^colour$/],
  ];
  for (const [what, key, value, field] of cases) {
    it(`refuses ${what}, naming the field`, () => {
      const found = issues(withKey(key, value));
      assert.ok(
        found.some((i) => field.test(i.field)),
        `expected an issue on ${field}, got ${JSON.stringify(found)}`,
      );
    });
  }

  it("reports every bad field at once", () => {
    const found = issues(
      withKey("order", "sideways\nfailurePolicy: shrug").replace(/^failurePolicy: rollback-all$/m, ""),
    );
    const fields = found.map((i) => i.field).sort();
    assert.deepEqual(fields, ["failurePolicy", "order"]);
  });

  it("refuses YAML that does not parse, naming the line", () => {
    const found = issues("cluster: [unclosed\n");
    assert.match(found[0]?.field ?? "", /yaml line \d+/);
  });

  it("refuses a document that is not a mapping", () => {
    const found = issues("- just\n- a list\n");
    assert.match(found[0]?.message ?? "", /^expected a mapping, got /);
  });
});
