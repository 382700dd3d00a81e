/**
 * A graceful handover between two managed agents, seen from outside: the hooks write their own
 * journal (`<node> <hook> start|end <ns>` from `date`), the lease is read from the KV bucket, and
 * roles come over gRPC. Renewals are minutes apart here, so nothing in these tests can be the work
 * of a periodic lease step: every handover happens through the release, the watch and the calls.
 */
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { RunningAgent } from "../../agent/index.js";
import { type AgentServiceClient, Role, type WatchEventsResponse } from "../../proto/index.js";
import { agentClient, agentDoc, call, startTestAgent, subscribed, tempDir, waitFor } from "../helpers/agent_harness.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const BUCKET = "handover_test";

interface HookLine {
  node: string;
  hook: "promote" | "demote";
  phase: "start" | "end";
  ns: bigint;
}

describe("a graceful handover between managed agents", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let nc: NatsConnection;
  let journal: string;
  const agents: Record<string, RunningAgent> = {};
  const clients: Record<string, AgentServiceClient> = {};
  const activeEvents: { node: string; atMs: number }[] = [];

  /** Hook lines so far. */
  const hookLines = async (): Promise<HookLine[]> =>
    (await readFile(journal, "utf8").catch(() => ""))
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => {
        const [node = "", hook, phase, ns = "0"] = l.split(" ");
        return { node, hook: hook as HookLine["hook"], phase: phase as HookLine["phase"], ns: BigInt(ns) };
      });
  const find = (lines: HookLine[], node: string, hook: HookLine["hook"], phase: HookLine["phase"], after = 0n) =>
    lines.find((l) => l.node === node && l.hook === hook && l.phase === phase && l.ns > after);
  const nowNs = () => BigInt(Date.now()) * 1_000_000n;

  const roleOf = async (node: string) => {
    const c = clients[node];
    assert.ok(c);
    return (await call(c, c.info, {}, 5000)).role;
  };
  const switchover = (node: string, targetRole: Role) => {
    const c = clients[node];
    assert.ok(c);
    return call(c, c.switchover, { targetRole, requestedBy: "test" }, 60_000);
  };
  const lease = async (): Promise<{ holder: string } | null> => {
    const kv = await new Kvm(jetstream(nc)).open(BUCKET);
    const e = await kv.get("lease.c1.p1");
    return e?.operation === "PUT" ? e.json<{ holder: string }>() : null;
  };
  /** Makes `node`'s next `hook` runs sleep `seconds` between start and end, or fail (exit 3) before starting. */
  const behaviour = (node: string, hook: HookLine["hook"], b: { sleep?: number; fail?: boolean }) =>
    Promise.all([
      writeFile(path.join(tmp.dir, `${node}.${hook}.sleep`), String(b.sleep ?? 0)),
      b.fail
        ? writeFile(path.join(tmp.dir, `${node}.${hook}.fail`), "")
        : rm(path.join(tmp.dir, `${node}.${hook}.fail`), { force: true }),
    ]);

  const start = async (node: string) => {
    const d = tmp.dir;
    const script =
      `h=$1; [ -e "${d}/$HOTPATCH_NODE.$h.fail" ] && { echo "$h refused" >&2; exit 3; }; ` +
      `echo "$HOTPATCH_NODE $h start $(date +%s%N)" >> "${journal}"; ` +
      `sleep "$(cat "${d}/$HOTPATCH_NODE.$h.sleep" 2>/dev/null || echo 0)"; ` +
      `echo "$HOTPATCH_NODE $h end $(date +%s%N)" >> "${journal}"`;
    const hook = (h: string) => ({ run: ["/bin/sh", "-c", script, "hook", h], timeoutMs: 60_000 });
    agents[node] = await startTestAgent(
      d,
      agentDoc(d, node, nats.url, {
        metrics: undefined,
        role: {
          source: "managed",
          leaseTtlMs: 500_000,
          demoteAfterMs: 400_000,
          renewMs: 200_000,
          bucket: BUCKET,
          hooks: { promote: hook("promote"), demote: hook("demote") },
        },
      }),
    );
    const client = agentClient(agents[node].grpcPort);
    clients[node] = client;
    const stream = client.watchEvents({});
    stream.on("data", (d: WatchEventsResponse) => {
      if (d.event?.kind === "role.changed" && d.event.role === Role.ROLE_ACTIVE)
        activeEvents.push({ node, atMs: Number(d.event.timestampMs) });
    });
    stream.on("error", () => undefined);
    await subscribed(stream);
  };

  before(async () => {
    tmp = await tempDir("hotpatch-handover-");
    journal = path.join(tmp.dir, "hooks.journal");
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    await start("a");
    await waitFor("a to become active", async () => ((await roleOf("a")) === Role.ROLE_ACTIVE ? true : undefined));
    await start("b");
    // b fences its service once at start (demote hook); wait for that to be over.
    await waitFor("b's start-up demote hook", async () =>
      find(await hookLines(), "b", "demote", "end") ? true : undefined,
    );
  });

  after(async () => {
    for (const c of Object.values(clients)) c.close();
    for (const a of Object.values(agents)) await a.stop();
    await nc?.close();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("a switchover to standby returns after the demote hook ended and the lease is released; the peer takes it with no call, and reports active only after its promote hook", async () => {
    const asked = nowNs();
    const r = await switchover("a", Role.ROLE_STANDBY);
    assert.deepEqual(r, { previousRole: Role.ROLE_ACTIVE, role: Role.ROLE_STANDBY, auditError: "" });
    const aDown = find(await hookLines(), "a", "demote", "end", asked);
    assert.ok(aDown, "the demote hook had finished when the call returned");
    await waitFor("b to take the released lease", async () =>
      (await roleOf("b")) === Role.ROLE_ACTIVE ? true : undefined,
    );
    const lines = await hookLines();
    const bUp = find(lines, "b", "promote", "start", asked);
    const bUpEnd = find(lines, "b", "promote", "end", asked);
    assert.ok(bUp && bUpEnd, JSON.stringify(lines.map((l) => `${l.node} ${l.hook} ${l.phase}`)));
    assert.ok(aDown.ns < bUp.ns, "b's promote hook started after a's demote hook had finished");
    assert.equal((await lease())?.holder, "b");
    const event = await waitFor("b's role event", () => activeEvents.find((e) => e.node === "b"));
    assert.ok(BigInt(event.atMs) >= bUpEnd.ns / 1_000_000n, "b said active only once its promote hook had ended");
  });

  it("a switchover to active returns only once the promote hook has finished", async () => {
    await behaviour("a", "promote", { sleep: 1 });
    await switchover("b", Role.ROLE_STANDBY);
    assert.equal((await lease())?.holder, "");
    const asked = nowNs();
    const r = await switchover("a", Role.ROLE_ACTIVE);
    assert.equal(r.role, Role.ROLE_ACTIVE);
    assert.ok(
      find(await hookLines(), "a", "promote", "end", asked),
      "a's promote hook had ended when the call returned",
    );
    assert.equal(await roleOf("a"), Role.ROLE_ACTIVE);
    assert.equal((await lease())?.holder, "a");
    await behaviour("a", "promote", {});
  });

  it("stepping down while the promote hook still runs cancels it: the demote hook runs, the lease is released, the waiting call fails", async () => {
    await behaviour("b", "promote", { sleep: 30 });
    await switchover("a", Role.ROLE_STANDBY);
    const asked = nowNs();
    const promoting = switchover("b", Role.ROLE_ACTIVE);
    promoting.catch(() => undefined);
    await waitFor("b's promote hook to start", async () =>
      find(await hookLines(), "b", "promote", "start", asked) ? true : undefined,
    );
    const r = await switchover("b", Role.ROLE_STANDBY);
    assert.equal(r.role, Role.ROLE_STANDBY);
    await assert.rejects(promoting, /FAILED_PRECONDITION|lost or given up/);
    const lines = await hookLines();
    assert.equal(find(lines, "b", "promote", "end", asked), undefined, "the promote hook was killed before its end");
    const down = find(lines, "b", "demote", "end", asked);
    assert.ok(down && down.ns > (find(lines, "b", "promote", "start", asked)?.ns ?? 0n));
    assert.equal(await roleOf("b"), Role.ROLE_STANDBY);
    assert.equal((await lease())?.holder, "");
    await behaviour("b", "promote", {});
  });

  it("a failing promote hook gives the lease up again: EHOOK to the caller, the demote hook runs, the node stays standby", async () => {
    await behaviour("b", "promote", { fail: true });
    const asked = nowNs();
    await assert.rejects(switchover("b", Role.ROLE_ACTIVE), /ABORTED|promote hook.*exited with 3: promote refused/);
    assert.ok(find(await hookLines(), "b", "demote", "end", asked), "the demote hook ran after the failed promote");
    assert.equal(await roleOf("b"), Role.ROLE_STANDBY);
    assert.equal((await lease())?.holder, "");
    await behaviour("b", "promote", {});
    // The pair can still be switched over afterwards.
    assert.equal((await switchover("a", Role.ROLE_ACTIVE)).role, Role.ROLE_ACTIVE);
  });
});
