/** `hotpatch drill …` as an operator runs it, against a real managed pair (nats-server, two agents, two demo services). */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { waitFor } from "../../helpers/agent_harness.js";
import { hotpatch, jsonLines } from "../../helpers/cli.js";
import { startTestPair, type TestPair } from "../../helpers/pair_harness.js";

describe("hotpatch drill", () => {
  let p: TestPair;
  const args = (...more: string[]) => ["--pair", p.pair, "--cluster", p.cluster, "--nats", p.nats.url, ...more];
  // Discovery ends as soon as the pair looks healthy, so a long one costs a healthy pair nothing.
  const drillArgs = (...more: string[]) => args("--discovery", "10000", ...more);

  before(async () => {
    // Lease ttl 3 s (self-demotion after 1.2 s without a renewal), as in test/controller/drill: with
    // 1 s an agent held up for 400 ms by a busy machine demoted itself and the pair failed over by
    // itself, which no test here asks for.
    p = await startTestPair({ intervalMs: 100, leaseTtlMs: 3000 });
  });
  after(async () => {
    await p?.close();
  });

  it("a bad command line exits 2", async () => {
    const bad = await hotpatch(["drill", "failover", ...args("--insecure", "--kill", "everything")]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /expected agent or service/);
    const badLoad = await hotpatch(["drill", "switchover", ...args("--insecure", "--load", "10.1.2.3:80")]);
    assert.equal(badLoad.code, 2);
    assert.match(badLoad.stderr, /\[EBAD_ARGUMENT\]: load: .*loopback/);
    const noSecurity = await hotpatch(["drill", "switchover", ...args()]);
    assert.equal(noSecurity.code, 2);
    assert.match(noSecurity.stderr, /\[EBAD_ARGUMENT\].*--tls-ca/);
  });

  it("drill switchover prints the table: detection, takeover, old → new active, requests lost under load", async () => {
    const load = p.nodes.map((n) => `127.0.0.1:${p.servicePort(n)}`).join(",");
    const r = await hotpatch(["drill", "switchover", ...drillArgs("--insecure", "--load", load)]);
    assert.equal(r.code, 0, r.stderr);
    // The demo load generator ran through it, as a failover client of the pair.
    const lost = /requests lost\s+(\d+) of (\d+) \(\d+ failed, \d+ only STANDBY answers\)/.exec(r.stdout);
    assert.ok(lost, r.stdout);
    assert.ok(Number(lost[2]) > 0);
    assert.match(r.stdout, /old → new active\s+p1-a → p1-b/);
    assert.match(r.stdout, /detection\s+\d+ ms \(role-change\)/);
    assert.match(r.stdout, /takeover\s+\d+ ms/);
    assert.match(r.stdout, /both active seen\s+no/);
    assert.match(r.stdout, /pair healthy after\s+yes/);
    await waitFor("p1-b's service to answer as active", async () =>
      (await p.health("p1-b")).startsWith("OK active") ? true : undefined,
    );
  });

  it("drill failover --kill service --json prints one object naming the service to restart", async () => {
    const r = await hotpatch(["drill", "failover", ...drillArgs("--insecure", "--kill", "service", "--json")]);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.equal(lines.length, 1);
    const o = lines[0] as Record<string, unknown>;
    assert.equal(o.kind, "failover");
    assert.equal(o.kill, "service");
    assert.equal(o.oldActive, "p1-b");
    assert.equal(o.newActive, "p1-a");
    assert.equal(typeof o.detectionMs, "number");
    assert.equal(typeof o.takeoverMs, "number");
    assert.deepEqual((o.mustRestart as Record<string, unknown>).service, "quote");
    assert.match(await p.health("p1-b"), /^failure/);
  });

  it("a drill on the pair with a dead service is refused: exit 1 with [EPAIR_UNHEALTHY]", async () => {
    // The drill listens this long for a healthy pair before refusing: both nodes are heard by then.
    const r = await hotpatch(["drill", "switchover", ...args("--insecure", "--discovery", "3000")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[EPAIR_UNHEALTHY\].*p1-b: service quote unhealthy/);
    await p.startService("p1-b");
    assert.match(await p.health("p1-b"), /^OK standby/);
  });
});
