/**
 * A service process that died but was not reaped (its parent, like a node's init that does not
 * reap, never waits for it) stays in /proc as a zombie with its pid and start time. It is dead:
 * the agent's heartbeats report the service unhealthy, which fails a rollout's probes gate, and
 * no selector picks the zombie as the service's new main process.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { RunningAgent } from "../../agent/index.js";
import { ClusterView } from "../../controller/cluster/index.js";
import { evaluateGates } from "../../controller/rollout/gates.js";
import { Heartbeat, heartbeatSubject } from "../../proto/index.js";
import { agentDoc, startTestAgent, tempDir, waitFor } from "../helpers/agent_harness.js";
import { compileFixture, processState } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

describe("a zombie service", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let nc: NatsConnection;
  let agent: RunningAgent | undefined;
  let parent: ChildProcess | undefined;

  before(async () => {
    tmp = await tempDir("hotpatch-zombie-");
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
  });

  after(async () => {
    await agent?.stop();
    parent?.kill("SIGKILL");
    await nc?.close();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("is dead for the probes and the probes gate, whatever its start time says", async () => {
    const counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
    // sh starts the service, then becomes `sleep`, which never waits for it: its death leaves a zombie.
    parent = spawn("sh", ["-c", '"$0" & exec sleep 600', counter], { stdio: ["ignore", "pipe", "inherit"] });
    const pid = await new Promise<number>((resolve) => {
      parent?.stdout?.on("data", (d: Buffer) => {
        const m = /ready (\d+)/.exec(d.toString());
        if (m) resolve(Number(m[1]));
      });
    });
    agent = await startTestAgent(
      tmp.dir,
      agentDoc(tmp.dir, "node-z", nats.url, {
        services: [{ name: "svc", process: { exePath: counter }, probes: [] }],
      }),
    );
    const beats: Heartbeat[] = [];
    const sub = nc.subscribe(heartbeatSubject({ cluster: "c1", pair: "p1", node: "node-z" }));
    void (async () => {
      for await (const m of sub) beats.push(Heartbeat.decode(m.data));
    })();
    const view = ClusterView.watch(nc, "c1");
    try {
      await waitFor("a healthy beat naming the service's pid", () =>
        beats.find((b) => b.services[0]?.healthy && b.services[0].pid === pid),
      );

      process.kill(pid, "SIGKILL");
      await waitFor("the service to be a zombie", async () => ((await processState(pid)) === "Z" ? true : undefined));
      const sick = await waitFor("an unhealthy beat", () => beats.find((b) => b.services[0]?.healthy === false));
      const check = sick.services[0]?.probes.find((p) => p.name === "process");
      assert.match(check?.message ?? "", new RegExp(`process ${pid} exited \\(state Z: a zombie`));
      // Once dead it stays dead: the zombie is never picked up again as the service's main process.
      const after = beats.length;
      await waitFor("five more beats", () => (beats.length >= after + 5 ? true : undefined));
      assert.ok(beats.slice(after).every((b) => !b.services[0]?.healthy && b.services[0]?.pid !== pid));
      assert.equal(await processState(pid), "Z", "the zombie is still there");

      const node = await waitFor("the view's unhealthy node", () => {
        const n = view.node("p1", "node-z");
        return n && !n.services[0]?.healthy ? n : undefined;
      });
      const judged = evaluateGates(
        { heartbeatGap: null, probes: { mode: "enforce" }, noRestart: null, patchActive: null, metrics: [] },
        { node: "node-z", view: node, nowMs: view.now(), sinceMs: 0, baseline: [], bundleId: "none" },
      );
      const probes = judged.find((g) => g.gate === "probes");
      assert.equal(probes?.ok, false);
      assert.match(
        probes?.value ?? "",
        /svc unhealthy \(process: process \d+ (exited|was replaced)|no matching process/,
      );
    } finally {
      sub.unsubscribe();
      view.close();
    }
  });
});
