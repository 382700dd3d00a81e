/**
 * Service metrics in heartbeats, as another NATS client sees them: /proc metrics of the service's
 * real process, samples scraped from a real metrics page (a separate HTTP server process) and from a
 * real command; a source that fails or hangs has its values dropped (never republished) and its
 * `up` metrics at 0, with a log line; `hotpatch cluster status --json` shows the metrics.
 */
import assert from "node:assert/strict";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { parseConfig, type RunningAgent, startAgent } from "../../agent/index.js";
import { ServiceMetrics } from "../../agent/service_metrics/collector.js";
import { Heartbeat } from "../../proto/index.js";
import { agentDoc, must, tempDir, waitFor, writeConfig } from "../helpers/agent_harness.js";
import { hotpatch, jsonLines } from "../helpers/cli.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";
import { type MetricsPage, startMetricsPage } from "../helpers/metrics_page.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const PAGE = `# HELP queue_depth Requests waiting.
# TYPE queue_depth gauge
queue_depth 5
# TYPE http_requests_total counter
http_requests_total{method="get",code="200"} 1027
http_requests_total{code="500",method="post"} 3
# a metric the names list leaves out
noise_total 1
`;
const HTTP_KEYS = /^counter\.(queue_depth|http_requests_total)/;
const EXEC_KEYS = /^counter\.batch_backlog/;
const PROC_KEYS = /^(counter|busy)\.proc\./;

async function statusField(pid: number, key: string): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1]);
}

describe("service metrics in heartbeats", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let agent: RunningAgent;
  let watcher: NatsConnection;
  let counter: RunningFixture;
  let busy: RunningFixture;
  let page: MetricsPage;
  let execFile: string;
  const beats: Heartbeat[] = [];
  /** The agent's log messages (its JSON log lines' msg). */
  const logs: string[] = [];
  /** The first heartbeat from now on that satisfies `check`. */
  const nextBeat = (what: string, check: (m: Record<string, number>) => boolean, timeoutMs = 20_000) => {
    const from = beats.length;
    return waitFor(what, () => beats.slice(from).find((b) => check(b.metrics)), timeoutMs);
  };
  const logged = (re: RegExp) => waitFor(`a log line matching ${re}`, () => logs.find((l) => re.test(l)));

  before(async () => {
    tmp = await tempDir("hotpatch-svcmetrics-");
    nats = await startNatsServer();
    counter = await startFixture(await compileFixture("c/counter.c", ["-O1", "-g"]));
    // No workers, only the thread that never leaves event_loop(): one thread always on a CPU.
    busy = await startFixture(await compileFixture("c/patch_target.c", ["-O2", "-g", "-fPIE", "-pie", "-pthread"]), [
      "0",
    ]);
    page = await startMetricsPage(tmp.dir, PAGE);
    execFile = path.join(tmp.dir, "exec.txt");
    await writeFile(execFile, "# TYPE batch_backlog gauge\nbatch_backlog 12\n");
    const { config } = await writeConfig(
      tmp.dir,
      "node-a",
      agentDoc(tmp.dir, "node-a", nats.url, {
        role: { source: "static", role: "active" },
        services: [
          {
            name: "counter",
            process: { pid: counter.pid },
            metrics: {
              intervalMs: 200,
              // A healthy page must never miss its timeout on a busy machine: one late scrape would
              // drop its values from a heartbeat that a test reads once (cluster status).
              http: { url: page.url, timeoutMs: 2000, names: ["queue_depth", "http_requests_total"] },
              exec: { run: ["/bin/cat", execFile], timeoutMs: 5000 },
            },
          },
          { name: "busy", process: { pid: busy.pid }, metrics: { intervalMs: 200 } },
        ],
      }),
    );
    const logger = pino(
      { level: "info" },
      {
        write: (line: string) => {
          logs.push((JSON.parse(line) as { msg: string }).msg);
        },
      },
    );
    agent = await startAgent(config, { version: "test", logger });
    watcher = await connect({ servers: nats.url });
    watcher.subscribe("hotpatch.hb.c1.p1.node-a", {
      callback: (_e, m) => {
        beats.push(Heartbeat.decode(m.data));
      },
    });
  });

  after(async () => {
    await watcher?.close();
    await agent?.stop();
    await page?.close();
    await counter?.kill();
    await busy?.kill();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("carries /proc metrics of the service's process: resident memory, threads, open fds, CPU usage as a rate", async () => {
    const hb = await nextBeat("/proc metrics with a CPU rate", (m) => m["counter.proc.cpu_usage"] !== undefined);
    const m = hb.metrics;
    assert.equal(m["counter.up.proc"], 1);
    assert.equal(m["counter.proc.threads"], await statusField(counter.pid, "Threads"));
    assert.equal(m["counter.proc.open_fds"], (await readdir(`/proc/${counter.pid}/fd`)).length);
    const rssNow = (await statusField(counter.pid, "VmRSS")) * 1024;
    const rss = m["counter.proc.rss_bytes"] ?? 0;
    assert.ok(rss > rssNow / 2 && rss < rssNow * 2, `rss ${rss}, /proc says ${rssNow} now`);
    assert.ok((m["counter.proc.cpu_usage"] ?? -1) >= 0);
    // A spinning thread uses CPU: its rate (CPU seconds per second) shows it.
    await nextBeat("a CPU rate of the busy process above 0.05", (x) => (x["busy.proc.cpu_usage"] ?? 0) > 0.05);
  });

  it("a service whose process exits loses its /proc metrics (and the spinning process is gone)", async () => {
    await busy.kill();
    const hb = await nextBeat("busy proc down", (m) => m["busy.up.proc"] === 0);
    assert.deepEqual(
      Object.keys(hb.metrics).filter((k) => k.startsWith("busy.proc.")),
      [],
    );
    assert.equal(hb.metrics["busy.metrics_up"], 0);
  });

  it("carries the samples of a metrics page listed in names, flattened with sorted labels, and a command's samples", async () => {
    const hb = await nextBeat("scraped metrics", (m) => m["counter.queue_depth"] !== undefined);
    const m = hb.metrics;
    assert.equal(m["counter.queue_depth"], 5);
    assert.equal(m['counter.http_requests_total{code="200",method="get"}'], 1027);
    assert.equal(m['counter.http_requests_total{code="500",method="post"}'], 3);
    assert.ok(!Object.keys(m).some((k) => k.includes("noise")), "names keeps other samples out");
    const both = await nextBeat("exec metrics too", (x) => x["counter.batch_backlog"] !== undefined);
    assert.equal(both.metrics["counter.batch_backlog"], 12);
    await nextBeat("every source up", (x) => x["counter.metrics_up"] === 1);
  });

  it("hotpatch cluster status --json shows the metrics", async () => {
    // The status shows one heartbeat; on a busy machine a source's read may have missed its deadline
    // just then (its values are then rightly left out), so ask again until that heartbeat has them all.
    const m = await waitFor(
      "a cluster status showing a heartbeat with every source of counter up",
      async () => {
        const r = await hotpatch([
          "cluster",
          "status",
          "--cluster",
          "c1",
          "--nats",
          nats.url,
          "--json",
          "--wait",
          "2000",
        ]);
        assert.equal(r.code, 0, r.stderr);
        const doc = jsonLines(r.stdout)[0] as { nodes: { node: string; metrics: Record<string, number> }[] };
        const metrics = doc.nodes.find((n) => n.node === "node-a")?.metrics ?? {};
        return metrics["counter.metrics_up"] === 1 ? metrics : undefined;
      },
      60_000,
    );
    assert.equal(m["counter.queue_depth"], 5);
    assert.equal(m["counter.batch_backlog"], 12);
    assert.ok((m["counter.proc.rss_bytes"] ?? 0) > 0, JSON.stringify(m));
  });

  it("a new value on the page reaches the heartbeats", async () => {
    await page.serve(PAGE.replace("queue_depth 5", "queue_depth 9"));
    await nextBeat("queue_depth 9", (m) => m["counter.queue_depth"] === 9);
  });

  it("a page that hangs past its timeout: its values are dropped, up.http and metrics_up are 0, and a log line says why", async () => {
    await page.hang();
    const hb = await nextBeat("http down", (m) => m["counter.up.http"] === 0);
    const keys = Object.keys(hb.metrics);
    assert.deepEqual(
      keys.filter((k) => HTTP_KEYS.test(k)),
      [],
    );
    assert.equal(hb.metrics["counter.metrics_up"], 0);
    assert.equal(hb.metrics["counter.up.exec"], 1, "the other sources go on");
    assert.equal(hb.metrics["counter.batch_backlog"], 12);
    await logged(/metrics of counter from http failed.*no (complete answer|result) within 2000 ms/);
    await page.serve(PAGE);
    await nextBeat("http back", (m) => m["counter.queue_depth"] === 5 && m["counter.metrics_up"] === 1);
    await logged(/metrics of counter from http are back/);
  });

  it("a page answering an HTTP error or text that is not the exposition format fails the scrape the same way", async () => {
    await page.fail(500);
    await nextBeat("http down on 500", (m) => m["counter.up.http"] === 0 && m["counter.queue_depth"] === undefined);
    await logged(/answered HTTP 500, expected 200/);
    await page.serve("queue_depth five\n");
    await logged(/line 1: "five" is not a number/);
    const hb = await nextBeat("still down on bad text", (m) => m["counter.up.http"] === 0);
    assert.equal(hb.metrics["counter.queue_depth"], undefined);
    await page.serve(PAGE);
    await nextBeat("http back", (m) => m["counter.up.http"] === 1);
  });

  it("a command that fails drops its values", async () => {
    await rm(execFile);
    const hb = await nextBeat("exec down", (m) => m["counter.up.exec"] === 0);
    assert.equal(hb.metrics["counter.batch_backlog"], undefined);
    assert.equal(hb.metrics["counter.metrics_up"], 0);
    await logged(/metrics of counter from exec failed.*exited with 1/);
  });

  it("no heartbeat ever carried a source's values while that source was marked down", () => {
    assert.ok(beats.length > 10);
    for (const b of beats) {
      const keys = Object.keys(b.metrics);
      for (const [up, re] of [
        ["counter.up.http", HTTP_KEYS],
        ["counter.up.exec", EXEC_KEYS],
        ["counter.up.proc", /^counter\.proc\./],
        ["busy.up.proc", /^busy\.proc\./],
      ] as const) {
        if (b.metrics[up] !== 1)
          assert.deepEqual(
            keys.filter((k) => re.test(k)),
            [],
            `beat ${b.sequence}: ${up}`,
          );
      }
      assert.ok(keys.every((k) => !PROC_KEYS.test(k) || Number.isFinite(b.metrics[k])));
    }
  });
});

describe("service metrics reads over time", () => {
  it("a hung page keeps timing out after garbage collection: every read has a live deadline", async () => {
    // Node 20 may collect an AbortSignal.timeout held only by an AbortSignal.any, which then never
    // fires: a hung page would then stop the source's loop for good.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const tmp = await tempDir("hotpatch-svcmetrics-gc-");
    const page = await startMetricsPage(tmp.dir, "#!hang\n");
    const svc = must(
      parseConfig(
        {
          ...agentDoc(tmp.dir, "n", "nats://127.0.0.1:4222"),
          services: [
            {
              name: "svc",
              process: { pid: process.pid },
              metrics: { intervalMs: 50, process: false, http: { url: page.url, timeoutMs: 100 } },
            },
          ],
        },
        "gc.yaml",
      ).services[0],
      "service",
    );
    let failed = 0;
    const collector = new ServiceMetrics(svc, () => null, {
      log: () => undefined,
      read: (_s, _src, ok) => {
        if (!ok) failed++;
      },
    });
    const collecting = setInterval(gc, 10);
    collector.start();
    try {
      await waitFor("5 timed-out reads", () => (failed >= 5 ? true : undefined), 20_000);
      assert.deepEqual(collector.snapshot(), { values: { "svc.up.http": 0, "svc.metrics_up": 0 }, readAtMs: null });
    } finally {
      clearInterval(collecting);
      await collector.stop();
      await page.close();
      await tmp.cleanup();
    }
  });
});
