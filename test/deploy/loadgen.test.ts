/** The load generator against the real demo service (v1, and linked with the fix) and misbehaving servers. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  DemoError,
  type DemoService,
  type Endpoint,
  type LoadgenSummary,
  runLoadgen,
  startDemoService,
  startLoadgen,
} from "../../deploy/demo/index.js";
import { buildLinkedFix, buildV1, waitFor } from "./demo_helpers.js";

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const at = (e: Endpoint) => `${e.host}:${e.port}`;
/**
 * Request deadline of the runs whose counts are checked exactly: a live service on loopback always
 * answers within it, however busy the machine, so a slow answer is never counted as a failure.
 */
const PATIENT_MS = 10_000;

/** A real TCP server on a free loopback port that treats every connection with `onConnection`. */
async function misbehavingServer(onConnection: (s: Socket) => void): Promise<{ endpoint: string; server: Server }> {
  const server = createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  assert.ok(addr && typeof addr === "object");
  return { endpoint: `127.0.0.1:${addr.port}`, server };
}

describe("demo load generator", () => {
  let dir: string;
  let v1: string;
  let v2: string;
  const running: DemoService[] = [];
  const servers: Server[] = [];
  const start = async (opts: Parameters<typeof startDemoService>[0]) => {
    const s = await startDemoService(opts);
    running.push(s);
    return s;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "hotpatch-loadgen-"));
    [v1, v2] = await Promise.all([buildV1(dir), buildLinkedFix(dir)]);
  });
  after(async () => {
    await Promise.all(running.map((s) => s.kill()));
    for (const s of servers) s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("counts every v1 answer as wrong and stops after the requested count", async () => {
    const s = await start({ binary: v1 });
    const r = await runLoadgen({ endpoints: [at(s.endpoint)], requests: 300, concurrency: 8, timeoutMs: PATIENT_MS });
    assert.equal(r.stoppedBy, "requests");
    assert.equal(r.requests, 300);
    assert.deepEqual(
      { served: r.served, wrong: r.wrong, correct: r.correct, failed: r.failed, standby: r.standby },
      { served: 300, wrong: 300, correct: 0, failed: 0, standby: 0 },
    );
    assert.deepEqual(Object.keys(r.byVersion), ["v1"]);
    assert.equal(r.byVersion.v1?.wrong, 300);
  });

  it("counts answers by version: v1 wrong from the buggy service, v2 correct from the fixed one", async () => {
    const a = await start({ binary: v1 });
    const b = await start({ binary: v2 });
    const r = await runLoadgen({
      endpoints: [at(a.endpoint), at(b.endpoint)],
      requests: 200,
      concurrency: 4,
      timeoutMs: PATIENT_MS,
    });
    assert.equal(r.byVersion.v1?.wrong, 100);
    assert.equal(r.byVersion.v1?.correct, 0);
    assert.equal(r.byVersion.v2?.correct, 100);
    assert.equal(r.byVersion.v2?.wrong, 0);
    assert.deepEqual(
      r.perEndpoint.map((e) => e.served),
      [100, 100],
    );
  });

  it("counts STANDBY answers with the spread strategy, and the failover strategy moves past the standby", async () => {
    const standby = await start({ binary: v1, role: "standby" });
    const active = await start({ binary: v2, role: "active" });
    const endpoints = [at(standby.endpoint), at(active.endpoint)];
    const spread = await runLoadgen({ endpoints, requests: 100, timeoutMs: PATIENT_MS });
    assert.equal(spread.standby, 50);
    assert.equal(spread.served, 50);
    const failover = await runLoadgen({ endpoints, requests: 100, strategy: "failover", timeoutMs: PATIENT_MS });
    assert.equal(failover.standby, 0);
    assert.equal(failover.served, 100);
    assert.equal(failover.byVersion.v2?.correct, 100);
    const first = failover.perEndpoint[0];
    assert.ok(first && first.standby >= 1 && first.served === 0, JSON.stringify(failover.perEndpoint));
  });

  it("counts the requests lost when the service is killed mid-run, and still ends by itself", async () => {
    const s = await start({ binary: v1 });
    const run = startLoadgen({
      endpoints: [at(s.endpoint)],
      durationMs: 4000,
      ratePerSec: 400,
      concurrency: 4,
      timeoutMs: PATIENT_MS,
    });
    await new Promise((r) => setTimeout(r, 500));
    await waitFor("the service to serve requests", async () => run.snapshot().served > 0, 10_000);
    const before = run.snapshot();
    assert.equal(before.stoppedBy, null);
    assert.equal(before.failed, 0, "nothing fails while the service runs");
    await s.kill();
    const r = await run.done;
    assert.equal(r.stoppedBy, "duration");
    assert.ok(r.failed > 0, "requests after the kill fail");
    assert.equal(r.failed, r.failures.connect + r.failures.reset, JSON.stringify(r.failures));
    assert.ok(r.failures.connect > 0);
    assert.ok(
      r.firstFailureMs !== null && r.firstFailureMs >= before.elapsedMs,
      `first failure at ${r.firstFailureMs} ms, killed after ${before.elapsedMs} ms`,
    );
    assert.equal(r.requests, r.served + r.failed);
    assert.ok(r.elapsedMs < 4000 + PATIENT_MS, `ended after ${r.elapsedMs} ms`);
  });

  it("as a pair's client loses only the requests between the active's crash and the standby's promotion", async () => {
    const a = await start({ binary: v1, role: "active" });
    const b = await start({ binary: v1, role: "standby" });
    // Each phase lasts until the run has seen it, however slowly a busy machine gets there.
    const run = startLoadgen({
      endpoints: [at(a.endpoint), at(b.endpoint)],
      strategy: "failover",
      durationMs: 120_000,
      ratePerSec: 300,
      timeoutMs: PATIENT_MS,
    });
    const served = (i: number) => run.snapshot().perEndpoint[i]?.served ?? 0;
    await waitFor("the active to serve", async () => served(0) > 0, 10_000);
    await a.kill();
    await waitFor("requests to fail after the crash", async () => run.snapshot().failed > 0, 10_000);
    b.promote();
    await waitFor("the promoted standby to serve", async () => served(1) > 0, 10_000);
    run.stop();
    const r = await run.done;
    assert.ok(r.failed > 0, "requests between the crash and the promotion are lost");
    assert.equal(r.failures.timeout, 0);
    const [first, second] = r.perEndpoint;
    assert.ok(first && second);
    assert.ok(first.served > 0 && second.served > 0, JSON.stringify(r.perEndpoint));
    assert.ok(second.standby > 0, "the standby answered STANDBY before its promotion");
    assert.ok(r.lastFailureMs !== null && r.lastFailureMs < (r.byVersion.v1?.lastMs ?? 0), "served again after");
    assert.equal(r.requests, r.served + r.failed + r.standby);
  });

  it("as a pair's client loses nothing in a graceful switchover (promote the standby, then demote the active)", async () => {
    const a = await start({ binary: v1, role: "active" });
    const b = await start({ binary: v2, role: "standby" });
    // Each phase lasts until the run has seen it, however slowly a busy machine gets there.
    const run = startLoadgen({
      endpoints: [at(a.endpoint), at(b.endpoint)],
      strategy: "failover",
      durationMs: 120_000,
      ratePerSec: 300,
      timeoutMs: PATIENT_MS,
    });
    const version = (v: string) => run.snapshot().byVersion[v];
    await waitFor("the active (v1) to serve", async () => (version("v1")?.wrong ?? 0) > 0, 10_000);
    b.promote();
    // Graceful means the standby has really become active before the active steps down.
    await waitFor("b to report its promotion", async () => /role standby -> active/.test(b.output()), 10_000);
    a.demote();
    await waitFor("the new active (v2) to serve", async () => (version("v2")?.correct ?? 0) > 0, 10_000);
    run.stop();
    const r = await run.done;
    assert.equal(r.failed, 0);
    assert.equal(r.standby, 0);
    assert.ok((r.byVersion.v1?.wrong ?? 0) > 0 && (r.byVersion.v2?.correct ?? 0) > 0, JSON.stringify(r.byVersion));
    assert.ok((r.byVersion.v1?.lastMs ?? 0) <= (r.byVersion.v2?.lastMs ?? 0), "the answers moved to v2 and stayed");
  });

  it("counts a silent server as timeouts, a closing one as resets, a garbage one as protocol failures", async () => {
    const silent = await misbehavingServer(() => {});
    const closing = await misbehavingServer((sock) => sock.once("data", () => sock.destroy()));
    const garbage = await misbehavingServer((sock) => sock.once("data", () => sock.end("hello there\n")));
    servers.push(silent.server, closing.server, garbage.server);
    const r = await runLoadgen({
      endpoints: [silent.endpoint, closing.endpoint, garbage.endpoint],
      requests: 6,
      concurrency: 6,
      // Long enough that the closing and garbage servers (in this process) always answer first.
      timeoutMs: 1500,
    });
    assert.deepEqual(r.failures, { connect: 0, timeout: 2, reset: 2, protocol: 2 });
    assert.equal(r.failed, 6);
    assert.equal(r.served, 0);
  });

  it("stops early on stop() and drops in-flight requests uncounted on abort", async () => {
    const s = await start({ binary: v1 });
    const run = startLoadgen({ endpoints: [at(s.endpoint)], durationMs: 60_000, ratePerSec: 100 });
    await new Promise((r) => setTimeout(r, 200));
    run.stop();
    const stopped = await run.done;
    assert.equal(stopped.stoppedBy, "stopped");
    assert.ok(stopped.elapsedMs < 5000);
    const silent = await misbehavingServer(() => {});
    servers.push(silent.server);
    const abort = new AbortController();
    const hanging = startLoadgen({
      endpoints: [silent.endpoint],
      durationMs: 60_000,
      timeoutMs: 30_000,
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(), 100);
    const aborted: LoadgenSummary = await hanging.done;
    assert.equal(aborted.stoppedBy, "aborted");
    assert.equal(aborted.requests, 0);
  });

  it("refuses non-loopback endpoints and out-of-range options with coded errors", () => {
    const bad: [Parameters<typeof startLoadgen>[0], string, RegExp][] = [
      [{ endpoints: ["10.1.2.3:7000"] }, "ENOT_LOOPBACK", /not a loopback address/],
      [{ endpoints: ["example.com:7000"] }, "ENOT_LOOPBACK", /not a loopback address/],
      [{ endpoints: [] }, "EBAD_ARGUMENT", /at least one endpoint/],
      [{ endpoints: ["127.0.0.1"] }, "EBAD_ARGUMENT", /not host:port/],
      [{ endpoints: ["127.0.0.1:0"] }, "EBAD_ARGUMENT", /no valid port/],
      [{ endpoints: ["127.0.0.1:1"], concurrency: 0 }, "EBAD_ARGUMENT", /concurrency must be an integer from 1 to 256/],
      [{ endpoints: ["127.0.0.1:1"], durationMs: 7_200_000 }, "EBAD_ARGUMENT", /durationMs/],
      [{ endpoints: ["127.0.0.1:1"], ratePerSec: -1 }, "EBAD_ARGUMENT", /ratePerSec/],
      [{ endpoints: ["127.0.0.1:1"], strategy: "random" as "spread" }, "EBAD_ARGUMENT", /strategy/],
    ];
    for (const [options, code, message] of bad) {
      assert.throws(
        () => startLoadgen(options),
        (err: unknown) => err instanceof DemoError && err.code === code && message.test(err.message),
        JSON.stringify(options.endpoints),
      );
    }
  });

  it("runs from the command line: JSON summary, and exit code 2 for a non-loopback endpoint", async () => {
    const s = await start({ binary: v1 });
    const cli = path.join(root, "deploy/demo/loadgen");
    const ok = await execFileAsync(cli, ["--endpoint", at(s.endpoint), "--requests", "25", "--json"]);
    const summary = JSON.parse(ok.stdout) as LoadgenSummary;
    assert.equal(summary.requests, 25);
    assert.equal(summary.byVersion.v1?.wrong, 25);
    const human = await execFileAsync(cli, ["--endpoint", at(s.endpoint), "--duration", "1s"]);
    assert.match(human.stdout, /ended by duration\n {2}v1: 0 correct, \d+ wrong/);
    const refused = await execFileAsync(cli, ["--endpoint", "192.168.1.1:80"]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal((refused as { code: number }).code, 2);
    assert.match((refused as { stderr: string }).stderr, /\[ENOT_LOOPBACK\]/);
  });
});
