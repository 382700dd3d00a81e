/** `hotpatch rollout --plan … --dry-run`: the exact steps, nothing touched; invalid plans exit 2. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { hotpatch, jsonLines } from "../helpers/cli.js";
import { beatEvery } from "../helpers/heartbeats.js";
import { freePort, type NatsServer, startNatsServer } from "../helpers/nats_server.js";

describe("rollout --dry-run", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  const beats: { stop(): void }[] = [];
  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    dir = await mkdtemp(path.join(tmpdir(), "hotpatch-dry-"));
    await writeFile(path.join(dir, "manifest.json"), JSON.stringify({ id: "fix-7" }));
    await writeFile(path.join(dir, "patch.so"), "bytes");
    for (const [pair, node, role] of [
      ["p1", "p1-a", "active"],
      ["p1", "p1-b", "standby"],
      ["p2", "p2-a", "standby"],
      ["p2", "p2-b", "active"],
      ["p3", "p3-a", "active"],
      ["p3", "p3-b", "standby"],
    ] as const) {
      beats.push(beatEvery(nc, 100, () => ({ cluster: "dry", pair, node, role })));
    }
  });
  after(async () => {
    for (const b of beats) b.stop();
    await nc?.close();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function plan(name: string, body: string): Promise<string> {
    const file = path.join(dir, name);
    await writeFile(file, body);
    return file;
  }

  it("prints every stage, pair, node role and step in order, from the heartbeats it hears", async () => {
    // A plan over all pairs listens for its whole discovery time: 3 s, so that every node beating
    // every 100 ms from this process is heard even when the machine is busy.
    const file = await plan(
      "plan.yaml",
      `cluster: dry
nats: {servers: ["${nats.url}"]}
bundle: .
target: {exePath: /usr/sbin/smsc}
canary: {pairs: [p2], soak: 30s}
waves: {size: 2, maxParallel: 2, soak: 5s}
agents: {insecure: true}
discovery: 3s
`,
    );
    const r = await hotpatch(["rollout", "--plan", file, "--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout;
    assert.match(out, /cluster dry, bundle fix-7 .* target exePath=\/usr\/sbin\/smsc/);
    assert.match(out, /order standby-first, failure policy rollback-pair, progress deadline 10m00s/);
    assert.match(
      out,
      /gates: heartbeatGap ≤3 intervals \(enforce\), probes \(enforce\), noRestart \(enforce\), patchActive \(enforce\)/,
    );
    const lines = out.trim().split("\n");
    const from = lines.findIndex((l) => l.startsWith("canary:"));
    assert.deepEqual(lines.slice(from, from + 9), [
      "canary: 1 pair(s), 1 at a time, soak 30s",
      "  pair p2 (p2-a standby, p2-b active)",
      "    1. check both nodes: fresh heartbeats, services healthy, one active and one standby",
      "    2. stage bundle fix-7 on both nodes",
      "    3. apply fix-7 on the standby node (roles re-read first)",
      "    4. soak 30000 ms while the gates hold on the patched nodes' heartbeats",
      "    5. apply fix-7 on the other node (roles re-read first)",
      "    6. soak 30000 ms while the gates hold on the patched nodes' heartbeats",
      "wave 1: 2 pair(s), 2 at a time, soak 5s",
    ]);
    assert.match(out, /pair p1 \(p1-a active, p1-b standby\)/);
    assert.match(out, /pair p3 \(p3-a active, p3-b standby\)/);
  });

  it("with order switchover, swaps roles after the standby is patched", async () => {
    const file = await plan(
      "switch.yaml",
      `cluster: dry
nats: {servers: ["${nats.url}"]}
bundle: .
target: {exePath: /usr/sbin/smsc}
pairs: [p1]
order: switchover
canary: {pairs: 1, soak: 0s}
agents: {insecure: true}
`,
    );
    const r = await hotpatch(["rollout", "--plan", file, "--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    const steps = r.stdout
      .split("\n")
      .filter((l) => /^\s+\d+\. /.test(l))
      .map((l) => l.trim().split(" ")[1]);
    assert.deepEqual(steps, ["check", "stage", "apply", "switch", "soak", "apply", "soak"]);
  });

  it("--json prints the plan, stages and roles as one document", async () => {
    const file = await plan(
      "json.yaml",
      // Discovery of named pairs ends once both nodes of each are heard; 10 s only bounds a busy machine.
      `cluster: dry\nnats: {servers: ["${nats.url}"]}\nbundle: .\ntarget: {exePath: /x}\npairs: [p1, p3]\nagents: {insecure: true}\ndiscovery: 10s\n`,
    );
    const r = await hotpatch(["rollout", "--plan", file, "--dry-run", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const doc = jsonLines(r.stdout)[0] as {
      dryRun: boolean;
      stages: { name: string; pairs: string[] }[];
      roles: Record<string, string>;
    };
    assert.equal(doc.dryRun, true);
    assert.deepEqual(
      doc.stages.map((s) => [s.name, s.pairs]),
      [
        ["canary", ["p1"]],
        ["wave 1", ["p3"]],
      ],
    );
    assert.equal(doc.roles["p3-a"], "active");
  });

  it("a plan naming its pairs still prints its steps when the cluster cannot be heard", async () => {
    const port = await freePort();
    const file = await plan(
      "offline.yaml",
      `cluster: dry\nnats: {servers: ["nats://127.0.0.1:${port}"]}\nbundle: .\ntarget: {exePath: /x}\npairs: [p9]\nagents: {insecure: true}\n`,
    );
    const r = await hotpatch(["rollout", "--plan", file, "--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /cluster not heard/);
    assert.match(r.stdout, /pair p9 \(nodes unknown\)/);
  });

  it("an invalid plan exits 2 and lists every bad field", async () => {
    const file = await plan("bad.yaml", `cluster: dry\nbundle: .\ntarget: {}\norder: sideways\nwaves: {size: 0}\n`);
    const r = await hotpatch(["rollout", "--plan", file, "--dry-run"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /\[EPLAN_INVALID\]/);
    for (const field of ["target:", "order:", "waves.size:", "agents:"]) assert.ok(r.stderr.includes(field), field);
  });
});
