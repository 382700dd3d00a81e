/**
 * `npm run demo`: the whole story on one machine in under a minute. Starts NATS and two 1+1 pairs
 * (four demo services, four real agents, each node in its own PID namespace), builds the fix bundle
 * from source, rolls it out standby-first with the live progress view while load runs against both
 * pairs, shows the answers change with no failed request, runs a switchover drill, and ends with a
 * summary. Everything it started is stopped at the end, also on Ctrl-C.
 *
 * Options: --json (one summary object at the end instead of the table), --keep (leave the working
 * folder for inspection).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type DemoNats, type DemoNode, runHotpatch, startNats, startNode } from "./demo_cluster.js";
import { startLoadgen } from "./loadgen.js";
import { buildDemoService, DEMO_FIX_SOURCE } from "./service.js";
import type { LoadgenRun, LoadgenSummary } from "./types.js";

const json = process.argv.includes("--json");
const keep = process.argv.includes("--keep");
const CLUSTER = "demo";
const PAIRS = ["p1", "p2"];
const started = Date.now();

const bold = (t: string) => (process.stdout.isTTY ? `\x1b[1m${t}\x1b[0m` : t);

function say(text: string): void {
  if (!json) process.stdout.write(`\n${bold(`▶ ${text}`)}  (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
}

function versionCounts(s: LoadgenSummary): string {
  return Object.entries(s.byVersion)
    .map(([v, c]) => `${v}: ${c.correct} right, ${c.wrong} wrong`)
    .join("; ");
}

async function main(): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hotpatch-demo-"));
  const nodes: DemoNode[] = [];
  const loads: LoadgenRun[] = [];
  let nats: DemoNats | undefined;
  let cleaning: Promise<void> | undefined;
  const running = new AbortController(); // ends any hotpatch command still running
  const cleanup = () => {
    cleaning ??= (async () => {
      running.abort();
      for (const l of loads) l.stop();
      await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
      await nats?.stop().catch(() => undefined);
      await Promise.race([Promise.all(loads.map((l) => l.done)), new Promise((r) => setTimeout(r, 3000))]);
      if (!keep) await rm(dir, { recursive: true, force: true });
    })();
    return cleaning;
  };
  const onSignal = () => {
    process.stderr.write("\ninterrupted: stopping everything the demo started\n");
    void cleanup().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    say("starting NATS and two 1+1 pairs (each node: the demo service and a hotpatch agent)");
    nats = await startNats(dir);
    const binary = await buildDemoService(path.join(dir, "quote_service"));
    const natsUrl = nats.url;
    for (const pair of PAIRS) {
      const made = await Promise.all([
        startNode({
          dir,
          cluster: CLUSTER,
          pair,
          node: `${pair}-a`,
          role: "active",
          natsUrl,
          binary,
          heartbeatMs: 250,
        }),
        startNode({
          dir,
          cluster: CLUSTER,
          pair,
          node: `${pair}-b`,
          role: "standby",
          natsUrl,
          binary,
          heartbeatMs: 250,
        }),
      ]);
      nodes.push(...made);
    }
    if (!json) {
      for (const n of nodes)
        process.stdout.write(`  ${n.node.padEnd(5)} ${n.role.padEnd(8)} service on 127.0.0.1:${n.servicePort}\n`);
    }

    say("load: each pair's clients send QUOTE requests to its active node (and fail over to the standby)");
    for (const pair of PAIRS) {
      const endpoints = nodes.filter((n) => n.pair === pair).map((n) => `127.0.0.1:${n.servicePort}`);
      loads.push(
        startLoadgen({ endpoints, strategy: "failover", ratePerSec: 150, concurrency: 4, durationMs: 300_000 }),
      );
    }
    await new Promise((r) => setTimeout(r, 1500));
    const before = loads.map((l) => l.snapshot());
    if (!json) for (const [i, s] of before.entries()) process.stdout.write(`  ${PAIRS[i]}: ${versionCounts(s)}\n`);

    say("building the fix bundle from source (deploy/demo/fix/fix_price.c) against the service binary");
    const bundle = path.join(dir, "fix-price");
    const built = await runHotpatch(
      [
        "build",
        "--target",
        binary,
        "--source",
        DEMO_FIX_SOURCE,
        "--function",
        "compute_price",
        "--function",
        "service_version",
        "--id",
        "fix-price",
        "--out",
        bundle,
      ],
      { show: !json, signal: running.signal },
    );
    if (built.code !== 0) throw new Error("hotpatch build failed");

    say("rolling it out: canary pair first, standby before active, soaking while heartbeat gates hold");
    const plan = path.join(dir, "plan.yaml");
    await writeFile(
      plan,
      [
        `cluster: ${CLUSTER}`,
        `nats: {servers: ["${natsUrl}"]}`,
        `bundle: ${bundle}`,
        `target: {exePath: ${binary}}`,
        "pairs: all",
        "order: standby-first",
        "canary: {pairs: 1, soak: 3s}",
        "waves: {size: 1, maxParallel: 1, soak: 2s}",
        "gates:",
        "  heartbeatGap: {intervals: 4}",
        "  probes: {mode: enforce}",
        "  noRestart: {mode: enforce}",
        "  patchActive: {mode: enforce}",
        "failurePolicy: rollback-all",
        "progressDeadline: 1m",
        "agents: {insecure: true}",
        "",
      ].join("\n"),
    );
    const rollout = await runHotpatch(["rollout", "--plan", plan, ...(json ? ["--json"] : [])], {
      show: !json,
      signal: running.signal,
    });
    const mid = loads.map((l) => l.snapshot());

    say("switchover drill on p1: the standby (already patched) takes over, the old active steps down");
    const drill = await runHotpatch(
      ["drill", "switchover", "--pair", "p1", "--cluster", CLUSTER, "--nats", natsUrl, "--insecure", "--json"],
      { signal: running.signal },
    );
    const drillResult =
      drill.code === 0 ? (JSON.parse(drill.stdout.trim().split("\n").pop() ?? "{}") as Record<string, unknown>) : null;
    await new Promise((r) => setTimeout(r, 1500));

    for (const l of loads) l.stop();
    const after = await Promise.all(loads.map((l) => l.done));
    const status = await runHotpatch(["cluster", "status", "--cluster", CLUSTER, "--nats", natsUrl, "--json"], {
      signal: running.signal,
    });

    const failed = after.reduce((n, s) => n + s.failed, 0);
    const wrongAfter = after.reduce((n, s, i) => n + s.wrong - (mid[i]?.wrong ?? 0), 0);
    const summary = {
      seconds: Number(((Date.now() - started) / 1000).toFixed(1)),
      rolloutExit: rollout.code,
      pairs: PAIRS.map((pair, i) => ({
        pair,
        requests: after[i]?.requests ?? 0,
        served: after[i]?.served ?? 0,
        failed: after[i]?.failed ?? 0,
        byVersion: after[i]?.byVersion ?? {},
      })),
      failedRequests: failed,
      wrongAnswersAfterRollout: wrongAfter,
      drill: drillResult,
      cluster: status.code === 0 ? status.stdout.trim() : null,
    };
    if (json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    } else {
      say("summary");
      process.stdout.write(`  pair  requests  served  unserved  failed  answers by version\n`);
      for (const [i, p] of summary.pairs.entries()) {
        const s = after[i] as LoadgenSummary;
        const unserved = p.requests - p.served - p.failed; // both nodes said STANDBY (mid-switchover)
        process.stdout.write(
          `  ${p.pair.padEnd(4)}  ${String(p.requests).padStart(8)}  ${String(p.served).padStart(6)}  ${String(unserved).padStart(8)}  ${String(p.failed).padStart(6)}  ${versionCounts(s)}\n`,
        );
      }
      process.stdout.write(
        `  rollout: exit ${rollout.code}; wrong answers after it: ${wrongAfter}; failed requests overall: ${failed}\n`,
      );
      if (drillResult) {
        process.stdout.write(
          `  switchover drill on p1: ${String(drillResult.oldActive)} → ${String(drillResult.newActive)}, detection ${String(drillResult.detectionMs)} ms, takeover ${String(drillResult.takeoverMs)} ms\n`,
        );
      } else {
        process.stdout.write(`  switchover drill: failed (exit ${drill.code})\n`);
      }
      process.stdout.write(`  total: ${summary.seconds} s\n`);
    }
    return rollout.code === 0 && failed === 0 && wrongAfter === 0 && drillResult !== null ? 0 : 1;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
