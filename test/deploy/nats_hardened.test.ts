/**
 * The hardened NATS server as deploy/nats ships it (TLS, nkey users, per-identity permissions),
 * real nats-server, real agents of a managed pair: each attack of the security review is refused by
 * the server, and the pair and the controller's view stay as they were.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { RunningAgent } from "../../agent/index.js";
import { ClusterView } from "../../controller/cluster/index.js";
import { Role } from "../../proto/index.js";
import { agentClient, agentDoc, call, startTestAgent, tempDir, waitFor } from "../helpers/agent_harness.js";
import { publishBeat } from "../helpers/heartbeats.js";
import { type SecureNats, startSecureNats } from "../helpers/secure_nats.js";

const leaseKey = "lease.c1.p1";
const bucket = "hotpatch_roles";

/** Resolves with the first error the server reports on `nc` (a permissions violation), or rejects after `ms`. */
function nextServerError(nc: NatsConnection, ms = 10_000): Promise<Error> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server reported no error within ${ms} ms`)), ms);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "error") {
          clearTimeout(timer);
          resolve(s.error);
          return;
        }
      }
    })();
  });
}

describe("hardened NATS: authenticated, least-privilege identities", () => {
  let nats: SecureNats;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  const agents: Record<string, RunningAgent> = {};
  let controller: NatsConnection;
  let view: ClusterView;

  const roleOf = async (node: string) => {
    const a = agents[node];
    assert.ok(a);
    return (await call(agentClient(a.grpcPort), agentClient(a.grpcPort).info, {}, 5000)).role;
  };
  const activeNodes = async () => {
    const out: string[] = [];
    for (const n of ["node-a", "node-b"]) if ((await roleOf(n)) === Role.ROLE_ACTIVE) out.push(n);
    return out;
  };

  before(async () => {
    tmp = await tempDir("hotpatch-nats-hardened-");
    nats = await startSecureNats();
    for (const node of ["node-a", "node-b"]) {
      agents[node] = await startTestAgent(
        tmp.dir,
        agentDoc(tmp.dir, node, nats.url, {
          nats: nats.section(node),
          metrics: undefined,
          role: { source: "managed", leaseTtlMs: 3000, demoteAfterMs: 1200, renewMs: 150, bucket },
        }),
      );
    }
    controller = await nats.connectAs("ctl");
    view = ClusterView.watch(controller, "c1");
    // The agents work under their permissions: one of them takes the lease, both heartbeats arrive.
    await waitFor("one active node", async () => ((await activeNodes()).length === 1 ? true : undefined), 20_000);
    await waitFor("both heartbeats", () => (view.node("p1", "node-a") && view.node("p1", "node-b") ? true : undefined));
  });

  after(async () => {
    view?.close();
    await controller?.close();
    for (const a of Object.values(agents)) await a.stop();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("refuses a client without credentials, and one with an unknown nkey", async () => {
    await assert.rejects(
      connect({ servers: [nats.url], tls: { caFile: nats.caFile }, maxReconnectAttempts: 0 }),
      /Authorization Violation/i,
    );
    await assert.rejects(connect({ servers: [nats.url.replace("tls:", "nats:")], maxReconnectAttempts: 0 }), (err) => {
      // Without TLS the server refuses before any credentials are looked at.
      return err instanceof Error;
    });
  });

  for (const forger of ["node-b", "node-c"]) {
    it(`refuses ${forger} publishing node-a's heartbeat, and the controller's view is unaffected`, async () => {
      const nc = await nats.connectAs(forger);
      try {
        const refused = nextServerError(nc);
        await publishBeat(nc, {
          pair: "p1",
          node: "node-a",
          role: "active",
          sequence: 1_000_000,
          runId: "forged",
          services: [{ name: "svc", healthy: true, pid: 1, startTime: 1 }],
          patches: [{ pid: 1, patchId: "forged-patch", state: "active" }],
        });
        assert.match((await refused).message, /Permissions Violation for Publish to "hotpatch\.hb\.c1\.p1\.node-a"/);
        // Later real beats of node-a arrive; none of what the view holds came from the forger.
        const before = view.node("p1", "node-a")?.received ?? 0;
        await waitFor("three more real beats of node-a", () =>
          (view.node("p1", "node-a")?.received ?? 0) >= before + 3 ? true : undefined,
        );
        const a = view.node("p1", "node-a");
        assert.ok(a);
        assert.notEqual(a.runId, "forged");
        assert.ok(a.sequence < 1_000_000);
        assert.equal(
          a.patches.some((p) => p.patchId === "forged-patch"),
          false,
        );
        assert.equal(view.rejected, 0);
      } finally {
        await nc.close();
      }
    });
  }

  it("refuses node-c (pair p2) writing pair p1's lease, and the pair keeps one active node", async () => {
    const before = await activeNodes();
    assert.equal(before.length, 1);
    const nc = await nats.connectAs("node-c");
    try {
      const kv = await new Kvm(nc).open(bucket);
      const mallory = JSON.stringify({ holder: "node-c", expiresAtMs: Date.now() + 3600_000 });
      await assert.rejects(kv.put(leaseKey, mallory), /permission|timeout|no responders/i);
      // Its own pair's lease it may write.
      await kv.put("lease.c1.p2", JSON.stringify({ holder: "node-c", expiresAtMs: Date.now() + 1000 }));
    } finally {
      await nc.close();
    }
    const ownerNc = await nats.connectAs("view");
    try {
      const entry = await (await new Kvm(ownerNc).open(bucket)).get(leaseKey);
      assert.ok(entry);
      assert.equal(entry.json<{ holder: string }>().holder, before[0]);
    } finally {
      await ownerNc.close();
    }
    // A lease ttl later the same node is still the only active one.
    await new Promise((r) => setTimeout(r, 3500));
    assert.deepEqual(await activeNodes(), before);
  });

  it("lets a viewer read heartbeats and leases but write nothing", async () => {
    const nc = await nats.connectAs("view");
    try {
      const kv = await new Kvm(nc).open(bucket);
      assert.ok(await kv.get(leaseKey));
      await assert.rejects(kv.put(leaseKey, JSON.stringify({ holder: "", expiresAtMs: 0 })), /permission|timeout/i);
      const refused = nextServerError(nc);
      await publishBeat(nc, { pair: "p1", node: "node-b", sequence: 1_000_000, runId: "forged" });
      assert.match((await refused).message, /Permissions Violation for Publish/);
    } finally {
      await nc.close();
    }
  });

  it("lets the controller write its cluster's rollout bucket and no node's lease", async () => {
    const nc = await nats.connectAs("ctl");
    try {
      const rollouts = await new Kvm(nc).create("hotpatch-rollout-c1", { history: 5 });
      await rollouts.put("probe", "x");
      assert.equal((await rollouts.get("probe"))?.string(), "x");
      const leases = await new Kvm(nc).open(bucket).catch((err: Error) => err);
      if (!(leases instanceof Error))
        await assert.rejects(
          leases.put(leaseKey, JSON.stringify({ holder: "", expiresAtMs: 0 })),
          /permission|timeout/i,
        );
    } finally {
      await nc.close();
    }
  });
});
