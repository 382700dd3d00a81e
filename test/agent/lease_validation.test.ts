/**
 * What the managed role reads from the lease key is checked before it is believed: a value that is
 * not a lease, or whose expiry lies further ahead than the ttl allows (the review's "mallory" with
 * an expiry in a year), does not hold the pair standby for ever — a node takes the lease over once
 * it has watched the value stay unchanged for one ttl. Real nats-server, real agents.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { parseLease, type RunningAgent } from "../../agent/index.js";
import { Role } from "../../proto/index.js";
import { agentClient, agentDoc, call, startTestAgent, tempDir, waitFor } from "../helpers/agent_harness.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
const ttl = 3000;

describe("lease values are validated", () => {
  it("parseLease takes what an agent writes and nothing else", () => {
    const now = 1_000_000;
    assert.deepEqual(parseLease(enc({ holder: "node-a", expiresAtMs: now + ttl }), ttl, now), {
      holder: "node-a",
      expiresAtMs: now + ttl,
    });
    assert.deepEqual(parseLease(enc({ holder: "", expiresAtMs: 0, releasedBy: "node-b" }), ttl, now), {
      holder: "",
      expiresAtMs: 0,
      releasedBy: "node-b",
    });
    for (const bad of [
      { holder: "mallory", expiresAtMs: now + 365 * 86_400_000 },
      { holder: "node-a", expiresAtMs: now + 2 * ttl + 1 },
      { holder: "a.b", expiresAtMs: now },
      { holder: "node-a", expiresAtMs: "soon" },
      { holder: "node-a", expiresAtMs: Number.NaN },
      { holder: "node-a", expiresAtMs: now, extra: 1 },
      { holder: "", expiresAtMs: 0, releasedBy: 7 },
      ["node-a", now],
      "not json",
      "x".repeat(600),
    ])
      assert.equal(parseLease(enc(bad), ttl, now), null, JSON.stringify(bad).slice(0, 80));
  });

  describe("a forged far-future lease on the pair's key", () => {
    let tmp: Awaited<ReturnType<typeof tempDir>>;
    let nats: NatsServer;
    const agents: RunningAgent[] = [];

    before(async () => {
      tmp = await tempDir("hotpatch-lease-validation-");
      nats = await startNatsServer();
    });
    after(async () => {
      for (const a of agents) await a.stop();
      await nats?.close();
      await tmp?.cleanup();
    });

    it("is ignored: one node of the pair becomes active after one ttl, and only one", async () => {
      const nc = await connect({ servers: [nats.url] });
      const kv = await new Kvm(nc).create("roles_mallory", { history: 1 });
      await kv.put("lease.c1.p1", JSON.stringify({ holder: "mallory", expiresAtMs: Date.now() + 365 * 86_400_000 }));
      for (const node of ["node-a", "node-b"]) {
        agents.push(
          await startTestAgent(
            tmp.dir,
            agentDoc(tmp.dir, node, nats.url, {
              metrics: undefined,
              role: { source: "managed", leaseTtlMs: ttl, demoteAfterMs: 1200, renewMs: 150, bucket: "roles_mallory" },
            }),
          ),
        );
      }
      const roles = async () =>
        Promise.all(
          agents.map(async (a) => (await call(agentClient(a.grpcPort), agentClient(a.grpcPort).info, {})).role),
        );
      const active = await waitFor(
        "a node to take over mallory's lease",
        async () => {
          const r = await roles();
          return r.includes(Role.ROLE_ACTIVE) ? r : undefined;
        },
        30_000,
      );
      assert.equal(active.filter((r) => r === Role.ROLE_ACTIVE).length, 1);
      const holder = (await kv.get("lease.c1.p1"))?.json<{ holder: string }>().holder;
      assert.ok(holder === "node-a" || holder === "node-b", `holder ${holder}`);
      await nc.close();
    });
  });
});
