/**
 * Heartbeats as another NATS client sees them: protobuf on hotpatch.hb.<cluster>.<pair>.<node>,
 * increasing sequence, the right role and service health; they keep coming through a nats-server
 * restart; and the peer watch reports a lost peer.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { RunningAgent } from "../../agent/index.js";
import { type AgentServiceClient, Heartbeat, Role, type WatchEventsResponse } from "../../proto/index.js";
import { agentClient, agentDoc, call, startTestAgent, subscribed, tempDir, waitFor } from "../helpers/agent_harness.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";
import { freePort, type NatsServer, startNatsServer } from "../helpers/nats_server.js";

describe("heartbeats and peer watch", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let agent: RunningAgent;
  let watcher: NatsConnection;
  let fixture: RunningFixture;
  let counter: string;
  const beats: Heartbeat[] = [];

  before(async () => {
    tmp = await tempDir("hotpatch-hb-");
    nats = await startNatsServer();
    counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
    fixture = await startFixture(counter);
    const closedPort = await freePort();
    agent = await startTestAgent(
      tmp.dir,
      agentDoc(tmp.dir, "node-a", nats.url, {
        role: { source: "static", role: "active" },
        services: [
          {
            name: "counter",
            process: { exePath: counter },
            probes: [
              { name: "script", exec: ["/bin/sh", "-c", "exit 0"], timeoutMs: 10_000 },
              { name: "port", tcp: { host: "127.0.0.1", port: closedPort }, timeoutMs: 200 },
            ],
          },
        ],
      }),
    );
    watcher = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    watcher.subscribe("hotpatch.hb.c1.p1.node-a", {
      callback: (_e, m) => {
        beats.push(Heartbeat.decode(m.data));
      },
    });
  });

  after(async () => {
    await watcher?.close();
    await agent?.stop();
    await fixture?.kill();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("publishes protobuf heartbeats with increasing sequence, the role, interval and run id", async () => {
    await waitFor("5 heartbeats", () => (beats.length >= 5 ? true : undefined));
    const first5 = beats.slice(0, 5);
    for (let i = 1; i < first5.length; i++) assert.ok((first5[i]?.sequence ?? 0) > (first5[i - 1]?.sequence ?? 0));
    for (const b of first5) {
      assert.equal(b.role, Role.ROLE_ACTIVE);
      assert.equal(b.intervalMs, 100);
      assert.deepEqual([b.cluster, b.pair, b.node], ["c1", "p1", "node-a"]);
      assert.equal(b.runId, first5[0]?.runId);
    }
  });

  it("reports service health: the process check with its pid and start time, and each probe", async () => {
    const hb = await waitFor("a heartbeat with probe results", () =>
      beats.find((b) => (b.services[0]?.probes.length ?? 0) === 3),
    );
    const svc = hb.services[0];
    assert.equal(svc?.name, "counter");
    assert.equal(svc?.pid, fixture.pid);
    assert.ok((svc?.startTime ?? 0) > 0);
    const probes = Object.fromEntries((svc?.probes ?? []).map((p) => [p.name, p.ok]));
    assert.deepEqual(probes, { process: true, script: true, port: false });
    assert.equal(svc?.healthy, false, "a failing TCP probe makes the service unhealthy");
    assert.ok((hb.load?.memoryUsed ?? 0) > 0 && (hb.load?.memoryUsed ?? 1) < 1);
  });

  it("reports the service's process as gone once it exits", async () => {
    await fixture.kill();
    const hb = await waitFor("a heartbeat without the process", () =>
      beats.slice(-3).find((b) => b.services[0]?.probes.find((p) => p.name === "process" && !p.ok)),
    );
    assert.match(hb.services[0]?.probes.find((p) => p.name === "process")?.message ?? "", /exited|no matching process/);
  });

  it("keeps publishing through a nats-server restart (same port, same store), same run, higher sequence", async () => {
    const before = beats.length;
    const last = beats.at(-1);
    await nats.kill();
    await new Promise((r) => setTimeout(r, 500));
    await nats.start();
    const after = await waitFor(
      "heartbeats after the restart",
      () => (beats.length >= before + 5 ? beats.slice(before) : undefined),
      15_000,
    );
    assert.ok(
      after.every((b) => b.runId === last?.runId),
      "the agent did not restart",
    );
    assert.ok(after.every((b) => b.sequence > (last?.sequence ?? 0)));
  });

  it("reports the pair peer lost when its heartbeats stop, and seen when they come", async () => {
    const client: AgentServiceClient = agentClient(agent.grpcPort);
    const seen: WatchEventsResponse[] = [];
    const stream = client.watchEvents({});
    stream.on("data", (d: WatchEventsResponse) => seen.push(d));
    stream.on("error", () => undefined);
    try {
      await subscribed(stream);
      const peerDir = path.join(tmp.dir, "peer");
      const peer = await startTestAgent(tmp.dir, agentDoc(peerDir, "node-b", nats.url, { metrics: undefined }));
      await waitFor("peer.seen", () => seen.find((s) => s.event?.kind === "peer.seen"));
      await peer.stop();
      const peerEvents = () =>
        seen.flatMap((s) => (s.event?.kind === "peer.lost" || s.event?.kind === "peer.seen" ? [s.event] : []));
      const lost = await waitFor("peer.lost after the peer stopped", () => {
        const last = peerEvents().at(-1);
        return last?.kind === "peer.lost" ? last : undefined;
      });
      assert.match(lost.message, /node-b/);
      // On a starved machine a late beat can make the peer count as lost (and seen again) before it
      // stopped: the counter must count every loss the stream reported, once.
      await waitFor("hotpatch_peer_lost_total to count the losses streamed", async () => {
        const text = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
        const total = Number(/^hotpatch_peer_lost_total (\d+)$/m.exec(text)?.[1]);
        const losses = peerEvents().filter((e) => e.kind === "peer.lost").length;
        return total >= 1 && total === losses ? true : undefined;
      });
    } finally {
      stream.cancel();
      client.close();
    }
  });
});

describe("an agent started while NATS is down", () => {
  it("serves gRPC at once, and publishes heartbeats once NATS comes up", async () => {
    const tmp = await tempDir("hotpatch-nonats-");
    const port = await freePort();
    let nats: NatsServer | undefined;
    let agent: RunningAgent | undefined;
    let client: AgentServiceClient | undefined;
    let watcher: NatsConnection | undefined;
    try {
      agent = await startTestAgent(
        tmp.dir,
        agentDoc(tmp.dir, "node-a", `nats://127.0.0.1:${port}`, { metrics: undefined }),
      );
      client = agentClient(agent.grpcPort);
      const c = client;
      assert.equal((await call(c, c.info, {})).node, "node-a");
      nats = await startNatsServer(port);
      watcher = await connect({ servers: nats.url });
      const sub = watcher.subscribe("hotpatch.hb.c1.p1.node-a", { max: 1 });
      for await (const m of sub) assert.equal(Heartbeat.decode(m.data).node, "node-a");
    } finally {
      await watcher?.close();
      client?.close();
      await agent?.stop();
      await nats?.close();
      await tmp.cleanup();
    }
  });
});
