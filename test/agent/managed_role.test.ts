/**
 * Managed roles: two agents of one pair elect their active node through a JetStream KV lease on a
 * real nats-server. Each agent reaches NATS through its own TCP proxy, so the test can partition
 * one node silently (bytes dropped, connection kept: nothing tells the client). Roles are sampled
 * over gRPC (which the partition does not touch) all along: at no sample are both nodes active.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { RunningAgent } from "../../agent/index.js";
import { type AgentServiceClient, Role, type WatchEventsResponse } from "../../proto/index.js";
import { agentClient, agentDoc, call, startTestAgent, subscribed, tempDir, waitFor } from "../helpers/agent_harness.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp_proxy.js";

// Both agents run in the test process: a stall of it longer than demoteAfterMs rightly makes the
// active step down. These leave room for the stalls of a busy CI machine (600 ms was not enough).
const leaseTtlMs = 3000;
const demoteAfterMs = 1200;
const renewMs = 150;

interface Sample {
  at: number;
  a: Role | "error";
  b: Role | "error";
}

describe("managed roles through a KV lease", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  const proxies: Record<string, TcpProxy> = {};
  const agents: Record<string, RunningAgent> = {};
  const clients: Record<string, AgentServiceClient> = {};
  const events: { node: string; at: number; role: Role }[] = [];
  const samples: Sample[] = [];
  let sampling = true;
  let sampler: Promise<void> = Promise.resolve();
  let hookLog: string;

  const roleOf = async (node: string): Promise<Role | "error"> => {
    const c = clients[node];
    if (!c) return "error";
    try {
      return (await call(c, c.info, {}, 5000)).role;
    } catch {
      return "error";
    }
  };

  const start = async (node: string) => {
    const proxy = proxies[node];
    assert.ok(proxy);
    const hook = (what: string) => ["/bin/sh", "-c", `echo "$HOTPATCH_NODE ${what}" >> ${hookLog}`];
    agents[node] = await startTestAgent(
      tmp.dir,
      agentDoc(tmp.dir, node, `nats://127.0.0.1:${proxy.port}`, {
        metrics: undefined,
        role: {
          source: "managed",
          leaseTtlMs,
          demoteAfterMs,
          renewMs,
          bucket: "roles_test",
          hooks: { promote: hook("promote"), demote: hook("demote") },
        },
      }),
    );
    const client = agentClient(agents[node].grpcPort);
    clients[node] = client;
    const stream = client.watchEvents({});
    stream.on("data", (d: WatchEventsResponse) => {
      if (d.event?.kind === "role.changed") events.push({ node, at: Number(d.event.timestampMs), role: d.event.role });
    });
    stream.on("error", () => undefined);
    await subscribed(stream);
  };

  const bothActive = () => samples.filter((s) => s.a === Role.ROLE_ACTIVE && s.b === Role.ROLE_ACTIVE);

  before(async () => {
    tmp = await tempDir("hotpatch-managed-");
    hookLog = path.join(tmp.dir, "hooks.log");
    nats = await startNatsServer();
    proxies.a = await startTcpProxy(nats.port);
    proxies.b = await startTcpProxy(nats.port);
    await start("a");
    await waitFor("a to become active", async () => ((await roleOf("a")) === Role.ROLE_ACTIVE ? true : undefined));
    await start("b");
    sampler = (async () => {
      while (sampling) {
        const [a, b] = await Promise.all([roleOf("a"), roleOf("b")]);
        samples.push({ at: Date.now(), a, b });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  });

  after(async () => {
    sampling = false;
    await sampler;
    for (const c of Object.values(clients)) c.close();
    for (const a of Object.values(agents)) await a.stop();
    for (const p of Object.values(proxies)) await p.close();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("the first node takes the lease; the second stays standby", async () => {
    await new Promise((r) => setTimeout(r, leaseTtlMs));
    assert.equal(await roleOf("a"), Role.ROLE_ACTIVE);
    assert.equal(await roleOf("b"), Role.ROLE_STANDBY);
    assert.match(await readFile(hookLog, "utf8"), /^a promote$/m);
  });

  it("a partitioned active demotes itself before its peer takes over the expired lease", async () => {
    const cutAt = Date.now();
    proxies.a?.cut();
    const bActiveAt = await waitFor(
      "b to take over",
      async () => ((await roleOf("b")) === Role.ROLE_ACTIVE ? Date.now() : undefined),
      20_000,
    );
    // The events come over their own stream, which may trail the Info answer.
    const [aDemote, bPromote] = await waitFor("both role changes to be streamed", () => {
      const down = events.find((e) => e.node === "a" && e.role === Role.ROLE_STANDBY && e.at >= cutAt);
      const up = events.find((e) => e.node === "b" && e.role === Role.ROLE_ACTIVE);
      return down && up ? ([down, up] as const) : undefined;
    });
    assert.ok(aDemote.at < bPromote.at, `a demoted at ${aDemote.at}, b promoted at ${bPromote.at}`);
    // b waits one ttl after the last renewal it saw, plus up to a renew period to see it and one to act, plus its promote hook.
    process.stdout.write(
      `# takeover after partition: ${bActiveAt - cutAt} ms (lease ttl ${leaseTtlMs} ms, renew ${renewMs} ms); a demoted ${aDemote.at - cutAt} ms after the cut\n`,
    );
    assert.deepEqual(bothActive(), []);
    assert.match(await readFile(hookLog, "utf8"), /^a demote$/m);
  });

  it("healing the partition does not make the old active active again", async () => {
    proxies.a?.heal();
    await new Promise((r) => setTimeout(r, 2 * leaseTtlMs));
    // b holds the lease (on a starved machine it may be renewing it again after a missed deadline).
    await waitFor("b to be active", async () => ((await roleOf("b")) === Role.ROLE_ACTIVE ? true : undefined));
    assert.equal(await roleOf("a"), Role.ROLE_STANDBY);
    assert.deepEqual(bothActive(), []);
  });

  it("a switchover to standby releases the lease and the peer takes it, never overlapping", async () => {
    const b = clients.b;
    assert.ok(b);
    const r = await call(b, b.switchover, { targetRole: Role.ROLE_STANDBY, requestedBy: "drill" });
    assert.deepEqual(r, { previousRole: Role.ROLE_ACTIVE, role: Role.ROLE_STANDBY, auditError: "" });
    await waitFor(
      "a to take the released lease",
      async () => ((await roleOf("a")) === Role.ROLE_ACTIVE ? true : undefined),
      10_000,
    );
    await new Promise((r) => setTimeout(r, leaseTtlMs));
    assert.equal(await roleOf("b"), Role.ROLE_STANDBY);
    assert.deepEqual(bothActive(), []);
  });

  it("a switchover to active is refused while the peer holds the lease", async () => {
    const b = clients.b;
    assert.ok(b);
    await assert.rejects(
      call(b, b.switchover, { targetRole: Role.ROLE_ACTIVE, requestedBy: "drill" }),
      /FAILED_PRECONDITION|holds the pair's lease/,
    );
    assert.ok(samples.length > 0, "roles were sampled");
    assert.deepEqual(bothActive(), []);
  });

  it("stopping the active agent hands the role over at once: demote hook, lease released, peer active", async () => {
    const a = agents.a;
    assert.ok(a);
    // a took the lease in the test before; wait for it rather than read the role once.
    await waitFor("a to be active", async () => ((await roleOf("a")) === Role.ROLE_ACTIVE ? true : undefined));
    clients.a?.close();
    delete clients.a;
    delete agents.a;
    const stoppedAt = Date.now();
    const stopping = a.stop();
    await waitFor("b to take over", async () => ((await roleOf("b")) === Role.ROLE_ACTIVE ? true : undefined), 10_000);
    await stopping;
    const promoted = await waitFor("b's promotion to be streamed", () =>
      events.find((e) => e.node === "b" && e.role === Role.ROLE_ACTIVE && e.at >= stoppedAt),
    );
    process.stdout.write(`# takeover after a graceful stop: ${promoted.at - stoppedAt} ms\n`);
    // a's demote hook ran before b's promote hook (each hook writes its own line).
    const lines = (await readFile(hookLog, "utf8")).trim().split("\n");
    assert.ok(lines.lastIndexOf("a demote") < lines.lastIndexOf("b promote"), lines.join(", "));
    assert.deepEqual(bothActive(), []);
  });
});
