/**
 * Drills on a real pair: a nats-server, two demo services and two `hotpatch agent` processes with
 * managed roles (lease ttl 3 s, so that an agent starved by a busy machine does not miss its
 * renewal deadline; heartbeats every 100 ms). Roles are checked from heartbeats (the drill's
 * result), from the demo services' own `HEALTH` answers, and from the hooks' own journal.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ClusterView, connectNats, judgePair, type NodeView } from "../../../controller/cluster/index.js";
import { type DrillError, type DrillEvent, type DrillOptions, runDrill } from "../../../controller/drill/index.js";
import { waitFor } from "../../helpers/agent_harness.js";
import { type HookRun, startTestPair, type TestPair } from "../../helpers/pair_harness.js";

describe("drills on a managed pair", () => {
  let p: TestPair;
  const base = (): Omit<DrillOptions, "kind"> => ({
    natsServers: [p.nats.url],
    cluster: p.cluster,
    pair: p.pair,
    agentSecurity: { kind: "insecure" },
    timeoutMs: 30_000,
    // Discovery ends once the pair looks healthy: a long one costs nothing, and a busy machine that
    // holds up an agent's heartbeat for a moment does not make the drill refuse a healthy pair.
    discoveryMs: 10_000,
  });
  const [a, b] = ["p1-a", "p1-b"];

  before(async () => {
    p = await startTestPair({ intervalMs: 100, leaseTtlMs: 3000, hookJournal: true });
  });

  /** Resolves once a heartbeat of `node` satisfies `pred`. */
  const beatOf = async (node: string, what: string, pred: (n: NodeView) => boolean): Promise<void> => {
    const nc = await connectNats([p.nats.url], "test");
    const view = ClusterView.watch(nc, p.cluster);
    try {
      await waitFor(what, () => {
        const n = view.node(p.pair, node);
        return n && pred(n) ? true : undefined;
      });
    } finally {
      view.close();
      await nc.close();
    }
  };
  after(async () => {
    await p?.close();
  });

  it("refuses bad options before touching anything, with EBAD_ARGUMENT", async () => {
    for (const bad of [
      { kind: "switchover" as const, kill: "agent" as const },
      { kind: "failover" as const, pair: "p1.*" },
      { kind: "failover" as const, timeoutMs: 10 },
    ]) {
      await assert.rejects(runDrill({ ...base(), ...bad }), (e: DrillError) => e.code === "EBAD_ARGUMENT");
    }
  });

  it("refuses a pair nobody heartbeats with EPAIR_NOT_FOUND", async () => {
    await assert.rejects(
      runDrill({ ...base(), pair: "nosuch", kind: "switchover", discoveryMs: 500 }),
      (e: DrillError) => e.code === "EPAIR_NOT_FOUND" && /nosuch/.test(e.message),
    );
  });

  it("refuses a pair whose standby service is down with EPAIR_UNHEALTHY, and changes nothing", async () => {
    const standbyPid = p.servicePid(b);
    process.kill(standbyPid, "SIGKILL");
    // The drill judges from heartbeats: wait until b's agent has seen its service die.
    await beatOf(b, "b's heartbeat to report its service unhealthy", (n) =>
      n.services.some((x) => x.name === "quote" && !x.healthy),
    );
    await assert.rejects(
      // The drill listens this long for a healthy pair before refusing: both nodes are heard by then.
      runDrill({ ...base(), kind: "switchover", discoveryMs: 3000 }),
      (e: DrillError) => e.code === "EPAIR_UNHEALTHY" && /p1-b: service quote unhealthy/.test(e.message),
    );
    assert.match(await p.health(a), /^OK active/);
    await p.startService(b);
    assert.match(await p.health(b), /^OK standby/);
  });

  it("a switchover swaps the roles, never with two actives, and leaves the pair healthy", async () => {
    const events: DrillEvent[] = [];
    await beatOf(b, "b's service to be healthy again", (n) => n.services.every((x) => x.healthy));
    const before = (await p.hookRuns()).length;
    const r = await runDrill({ ...base(), kind: "switchover", onEvent: (e) => events.push(e) });
    // When the drill returns, the new active's service already serves and the old one does not:
    // each hook ends only once its service answers in the new role, and the drill waits for both.
    assert.match(await p.health(b), /^OK active/);
    assert.match(await p.health(a), /^OK standby/);
    const runs = (await p.hookRuns()).slice(before);
    const at = (node: string, role: HookRun["role"], phase: HookRun["phase"]) =>
      runs.find((h) => h.node === node && h.role === role && h.phase === phase)?.ns;
    const aDown = at(a, "standby", "end");
    const bUp = at(b, "active", "start");
    assert.ok(
      aDown !== undefined && bUp !== undefined && at(b, "active", "end") !== undefined,
      JSON.stringify(runs, (_k, v) => (typeof v === "bigint" ? String(v) : v)),
    );
    assert.ok(aDown < bUp, "b's promote hook started only after a's demote hook had finished");
    assert.equal(r.oldActive, a);
    assert.equal(r.newActive, b);
    assert.equal(r.bothActiveSeen, false);
    assert.equal(r.healthyAfter, true);
    assert.equal(r.intervalMs, 100);
    assert.ok(Number.isFinite(r.detectionMs) && r.detectionMs > 0, `detection ${r.detectionMs}`);
    assert.ok(Number.isFinite(r.takeoverMs) && r.takeoverMs > 0, `takeover ${r.takeoverMs}`);
    const down = r.timeline.find((c) => c.node === a && c.role === "standby");
    const up = r.timeline.find((c) => c.node === b && c.role === "active");
    assert.ok(down && up, JSON.stringify(r.timeline));
    assert.ok(events.some((e) => e.kind === "takeover" && e.node === b));
    process.stdout.write(`# switchover: detection ${r.detectionMs} ms, takeover ${r.takeoverMs} ms\n`);
  });

  it("a failover killing the active's agent: the standby takes over; restore restarts the agent and the pair ends healthy", async () => {
    const killedPid = p.agentPid(b);
    let restored = "";
    const r = await runDrill({
      ...base(),
      kind: "failover",
      kill: "agent",
      restore: async (need) => {
        restored = `${need.target} ${need.node} ${need.pid}`;
        await p.startAgent(need.node);
      },
    });
    assert.equal(restored, `agent ${b} ${killedPid}`);
    assert.equal(r.oldActive, b);
    assert.equal(r.newActive, a);
    assert.equal(r.detectedBy, "heartbeat-gap");
    assert.ok(Number.isFinite(r.detectionMs) && r.detectionMs > 0, `detection ${r.detectionMs}`);
    assert.ok(r.takeoverMs >= r.detectionMs, `takeover ${r.takeoverMs} after detection ${r.detectionMs}`);
    assert.equal(r.healthyAfter, true);
    assert.equal(r.mustRestart, null);
    assert.equal(r.bothActiveSeen, false);
    assert.ok(r.timeline.some((c) => c.node === b && c.role === "lost"));
    assert.ok(r.timeline.some((c) => c.node === a && c.role === "active"));
    // The killed process is gone (observed from /proc), and a new agent heartbeats for b.
    assert.throws(() => process.kill(killedPid, 0));
    assert.notEqual(p.agentPid(b), killedPid);
    await waitFor("a's service to answer as active", async () =>
      (await p.health(a)).startsWith("OK active") ? true : undefined,
    );
    // The killed agent left its service active; the restarted agent, without the lease, demoted it.
    await waitFor("b's service to be demoted by its restarted agent", async () =>
      (await p.health(b)).startsWith("OK standby") ? true : undefined,
    );
    process.stdout.write(`# failover (agent): detection ${r.detectionMs} ms, takeover ${r.takeoverMs} ms\n`);
  });

  it("a failover killing the active's service: detected from its heartbeat; the controller swaps; the result names the service to restart", async () => {
    const r = await runDrill({ ...base(), kind: "failover", kill: "service" });
    assert.equal(r.oldActive, a);
    assert.equal(r.newActive, b);
    // Normally the next heartbeat reports the service down; an agent stalled for two intervals on a busy machine is seen first.
    assert.ok(["service-failed", "heartbeat-gap"].includes(r.detectedBy), JSON.stringify(r));
    assert.ok(Number.isFinite(r.detectionMs) && r.detectionMs > 0);
    assert.equal(r.healthyAfter, false);
    assert.equal(r.mustRestart?.target, "service");
    assert.equal(r.mustRestart?.node, a);
    assert.equal(r.mustRestart?.service, "quote");
    assert.match(await p.health(a), /^failure/);
    // The heartbeat says active before b's promote hook has run and its service has read its role file.
    await waitFor("b's service to answer as active", async () =>
      (await p.health(b)).startsWith("OK active") ? true : undefined,
    );
    await p.startService(a);
    // The restarted service follows its role file, which the demote hook set to standby.
    assert.match(await p.health(a), /^OK standby/);
    const nc = await connectNats([p.nats.url], "test");
    const view = ClusterView.watch(nc, p.cluster);
    try {
      const j = await waitFor(
        "the pair to be healthy again",
        () => {
          const j = judgePair(view.pairs().get(p.pair) ?? [], view.now());
          return j.kind === "healthy" ? j : undefined;
        },
        20_000,
      );
      assert.equal(j.active.node, b);
    } finally {
      view.close();
      await nc.close();
    }
  });
});
