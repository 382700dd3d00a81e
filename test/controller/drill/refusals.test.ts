/**
 * What a drill refuses, before it touches anything: pairs that are not healthy, and processes it
 * must not kill. The pair here is heartbeats published on a real nats-server as agents publish
 * them (no agents run), so each bad case can be made exactly; nothing here reaches a Switchover.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, beforeEach, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { applyHeartbeat, ClusterView, judgePair } from "../../../controller/cluster/index.js";
import { type DrillError, type DrillOptions, runDrill } from "../../../controller/drill/index.js";
import { PairObserver } from "../../../controller/drill/observer.js";
import { Heartbeat, Role } from "../../../proto/index.js";
import { type NatsServer, startNatsServer } from "../../helpers/nats_server.js";

type Spec = Partial<Omit<Heartbeat, "cluster" | "pair" | "node" | "sequence">> & { silent?: boolean };

const svc = (name: string, pid: number) => ({ name, healthy: true, pid, startTime: 1, probes: [], checkedAtMs: 0 });

describe("drill refusals", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let timer: NodeJS.Timeout;
  const spec: Record<string, Spec> = {};
  const seq: Record<string, number> = {};
  let sleeper: ChildProcess;

  const publish = (node: string, s: Omit<Spec, "silent">) => {
    seq[node] = (seq[node] ?? 0) + 1;
    const hb = Heartbeat.fromPartial({
      cluster: "c1",
      pair: "sim",
      node,
      role: Role.ROLE_STANDBY,
      // Sent every 50 ms, announced as 1 s: the pair stays alive (2 intervals) for the drill even when
      // this process's timer is held up on a busy machine, so each case fails for its own reason.
      intervalMs: 1000,
      runId: `run-${node}`,
      timestampMs: Date.now(),
      services: [svc("quote", 999_999)],
      ...s,
      sequence: seq[node],
    });
    nc.publish(`hotpatch.hb.c1.sim.${node}`, Heartbeat.encode(hb).finish());
  };
  const drill = (o: Partial<DrillOptions>) =>
    runDrill({
      natsServers: [nats.url],
      cluster: "c1",
      pair: "sim",
      kind: "failover",
      agentSecurity: { kind: "insecure" },
      timeoutMs: 10_000,
      // Discovery ends as soon as the pair looks healthy; the unhealthy cases listen this long.
      discoveryMs: 2000,
      ...o,
    });
  const code = (c: string, re?: RegExp) => (e: DrillError) => e.code === c && (!re || re.test(e.message));

  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    timer = setInterval(() => {
      for (const [node, { silent, ...s }] of Object.entries(spec)) if (!silent) publish(node, s);
    }, 50);
    sleeper = spawn("sleep", ["60"], { stdio: "ignore" });
  });
  after(async () => {
    clearInterval(timer);
    sleeper?.kill("SIGKILL");
    await nc?.close();
    await nats?.close();
  });
  beforeEach(() => {
    spec.a = { role: Role.ROLE_ACTIVE, agentPid: 0 };
    spec.b = { role: Role.ROLE_STANDBY };
  });

  it("two actives: EPAIR_UNHEALTHY", async () => {
    spec.b = { role: Role.ROLE_ACTIVE };
    await assert.rejects(drill({ kind: "switchover" }), code("EPAIR_UNHEALTHY", /2 active node\(s\): a, b/));
  });

  it("a node never heard: EPAIR_UNHEALTHY", async () => {
    spec.b = { role: Role.ROLE_STANDBY, silent: true };
    await assert.rejects(drill({ kind: "switchover" }), code("EPAIR_UNHEALTHY", /1 node\(s\) heartbeating, not 2/));
  });

  it("judges a node whose last heartbeat is older than two intervals as not alive, naming its age", () => {
    const beat = (node: string, role: Role) =>
      applyHeartbeat(
        undefined,
        Heartbeat.fromPartial({ cluster: "c1", pair: "sim", node, role, sequence: 1, intervalMs: 50, runId: "r" }),
        10_000,
      );
    const nodes = [beat("a", Role.ROLE_ACTIVE), beat("b", Role.ROLE_STANDBY)];
    assert.equal(judgePair(nodes, 10_100).kind, "healthy");
    const j = judgePair(nodes, 10_101);
    assert.equal(j.kind, "unhealthy");
    assert.match(
      j.kind === "unhealthy" ? j.problems.join("; ") : "",
      /a: last heartbeat 101 ms ago \(interval 50 ms\)/,
    );
  });

  it("an agent that does not announce its pid: ENO_PID", async () => {
    await assert.rejects(drill({ kill: "agent" }), code("ENO_PID", /does not name its agent's pid/));
  });

  it("a heartbeat naming this very process: ENOT_LOCAL, and nothing is killed", async () => {
    spec.a = { role: Role.ROLE_ACTIVE, agentPid: process.pid };
    await assert.rejects(drill({ kill: "agent" }), code("ENOT_LOCAL", /this very process/));
  });

  it("a pid whose start time is not the announced one (a reused pid, another host): ENOT_LOCAL, the process lives on", async () => {
    const pid = sleeper.pid ?? 0;
    spec.a = { role: Role.ROLE_ACTIVE, agentPid: pid, agentStartTime: 1 };
    await assert.rejects(drill({ kill: "agent" }), code("ENOT_LOCAL", /does not run on this host/));
    assert.equal(sleeper.exitCode, null);
    process.kill(pid, 0); // still there
  });

  it("kill service on a node with several services and none chosen, or an unknown one: EBAD_ARGUMENT", async () => {
    spec.a = { role: Role.ROLE_ACTIVE, services: [svc("quote", 1), svc("billing", 2)] };
    await assert.rejects(drill({ kill: "service" }), code("EBAD_ARGUMENT", /quote, billing: choose one/));
    await assert.rejects(drill({ kill: "service", service: "nosuch" }), code("EBAD_ARGUMENT", /no service nosuch/));
  });
});

describe("both-active detection from heartbeats", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.close();
  });

  const run = async (pair: string, beats: [string, Role, number][]) => {
    const view = ClusterView.watch(nc, "c1");
    const obs = new PairObserver(view, pair);
    const seq: Record<string, number> = {};
    try {
      for (const [node, role, t] of beats) {
        seq[node] = (seq[node] ?? 0) + 1;
        const hb = Heartbeat.fromPartial({
          cluster: "c1",
          pair,
          node,
          role,
          sequence: seq[node],
          timestampMs: t,
          intervalMs: 50,
          runId: node,
        });
        nc.publish(`hotpatch.hb.c1.${pair}.${node}`, Heartbeat.encode(hb).finish());
      }
      await nc.flush();
      await new Promise((r) => setTimeout(r, 100));
      return obs.bothActiveSeen();
    } finally {
      obs.close();
      view.close();
    }
  };

  it("an ACTIVE beat of one node between two ACTIVE beats of the other counts as both active", async () => {
    const A = Role.ROLE_ACTIVE;
    const S = Role.ROLE_STANDBY;
    assert.equal(
      await run("x1", [
        ["a", A, 1000],
        ["b", S, 1010],
        ["a", A, 1050],
        ["b", A, 1060],
        ["a", A, 1100],
      ]),
      true,
    );
  });

  it("a clean handover (the old active reports standby before the new one reports active) does not", async () => {
    const A = Role.ROLE_ACTIVE;
    const S = Role.ROLE_STANDBY;
    assert.equal(
      await run("x2", [
        ["a", A, 1000],
        ["b", S, 1010],
        ["a", A, 1050],
        ["a", S, 1100],
        ["b", A, 1110],
        ["a", S, 1150],
        ["b", A, 1160],
      ]),
      false,
    );
  });
});
