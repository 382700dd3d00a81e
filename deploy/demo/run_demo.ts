/**
 * `hotpatch demo` (and `npm run demo`): the whole story on one machine in under a minute. Starts
 * NATS and two 1+1 pairs (four demo services, four real agents, each node in its own PID
 * namespace), builds the fix bundle from source, rolls it out standby-first with the live progress
 * view while load runs against both pairs, shows the answers change with no failed request, runs a
 * switchover drill, and ends with a summary. Everything it started is stopped at the end, also when
 * its signal is aborted (Ctrl-C).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type DemoNats, type DemoNode, freePort, runHotpatch, startNats, startNode } from "./demo_cluster.js";
import { startLoadgen } from "./loadgen.js";
import { DEMO_CONTROLLER, type DemoSecurity, makeDemoSecurity } from "./security.js";
import { buildDemoService, DEMO_FIX_SOURCE } from "./service.js";
import type { DemoRunOptions, LoadgenRun, LoadgenSummary } from "./types.js";

const CLUSTER = "demo";
const PAIRS = ["p1", "p2"];

/** Exit code of a demo ended by its signal (as a shell reports SIGINT). */
export const DEMO_INTERRUPTED = 130;

function versionCounts(s: LoadgenSummary): string {
  return Object.entries(s.byVersion)
    .map(([v, c]) => `${v}: ${c.correct} right, ${c.wrong} wrong`)
    .join("; ");
}

/**
 * Runs the demo and returns its exit code: 0 when the rollout passed with no failed request, no
 * wrong answer after it and a completed drill; 1 otherwise; 130 when `signal` ended it.
 */
export async function runDemo(options: DemoRunOptions): Promise<number> {
  const { json, keep, signal } = options;
  const lab = options.lab === true;
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const started = Date.now();
  const bold = (t: string) => (stdout.isTTY ? `\x1b[1m${t}\x1b[0m` : t);
  const say = (text: string) => {
    if (!json) stdout.write(`\n${bold(`▶ ${text}`)}  (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  };
  const dir = await mkdtemp(path.join(os.tmpdir(), "hotpatch-demo-"));
  const nodes: DemoNode[] = [];
  const loads: LoadgenRun[] = [];
  let nats: DemoNats | undefined;
  let cleaning: Promise<void> | undefined;
  const running = new AbortController(); // ends any hotpatch command still running
  const onAbort = () => {
    stderr.write("\ninterrupted: stopping everything the demo started\n");
    running.abort();
  };
  if (signal.aborted) return DEMO_INTERRUPTED;
  signal.addEventListener("abort", onAbort, { once: true });
  const cleanup = () => {
    cleaning ??= (async () => {
      running.abort();
      for (const l of loads) l.stop();
      await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
      await nats?.stop().catch(() => undefined);
      await Promise.race([Promise.all(loads.map((l) => l.done)), sleep(3000, undefined, { ref: false })]);
      if (!keep) await rm(dir, { recursive: true, force: true });
    })();
    return cleaning;
  };
  try {
    say(
      lab
        ? "starting NATS and two 1+1 pairs, lab mode: NATS open on loopback, gRPC without TLS"
        : "starting NATS and two 1+1 pairs, hardened: mTLS gRPC with roles, NATS over TLS with one least-privilege identity each",
    );
    const natsPort = await freePort();
    const names = PAIRS.flatMap((pair) => [`${pair}-a`, `${pair}-b`].map((node) => ({ pair, node })));
    const sec: DemoSecurity | null = lab ? null : await makeDemoSecurity(dir, CLUSTER, names, natsPort);
    nats = await startNats(dir, natsPort, sec?.natsServerConfig);
    const binary = await buildDemoService(path.join(dir, "quote_service"));
    const natsUrl = nats.url;
    const nodeSecurity = (node: string) => {
      const server = sec?.servers[node];
      const natsSection = sec?.nodeNats[node];
      return sec && server && natsSection
        ? { security: { ca: sec.ca, server, controller: DEMO_CONTROLLER, nats: natsSection } }
        : {};
    };
    for (const pair of PAIRS) {
      const made = await Promise.all(
        (["active", "standby"] as const).map((role, i) => {
          const node = `${pair}-${i === 0 ? "a" : "b"}`;
          return startNode({
            dir,
            cluster: CLUSTER,
            pair,
            node,
            role,
            natsUrl,
            binary,
            heartbeatMs: 250,
            ...nodeSecurity(node),
          });
        }),
      );
      nodes.push(...made);
    }
    // The controller's identity: its nats: section for the plan, its file and client certificate for the commands.
    const natsArgs = sec ? ["--nats-config", sec.controllerNatsFile] : ["--nats", natsUrl];
    const agentArgs = sec
      ? ["--tls-ca", sec.ca, "--tls-cert", sec.controller.cert, "--tls-key", sec.controller.key]
      : ["--insecure"];
    if (!json) {
      for (const n of nodes)
        stdout.write(`  ${n.node.padEnd(5)} ${n.role.padEnd(8)} service on 127.0.0.1:${n.servicePort}\n`);
    }

    say("load: each pair's clients send QUOTE requests to its active node (and fail over to the standby)");
    for (const pair of PAIRS) {
      const endpoints = nodes.filter((n) => n.pair === pair).map((n) => `127.0.0.1:${n.servicePort}`);
      // A request fails when no node answers it, not when a busy machine answers it late (3 s).
      loads.push(
        startLoadgen({
          endpoints,
          strategy: "failover",
          ratePerSec: 150,
          concurrency: 4,
          durationMs: 300_000,
          timeoutMs: 3000,
        }),
      );
    }
    await sleep(1500, undefined, { signal: running.signal });
    const before = loads.map((l) => l.snapshot());
    if (!json) for (const [i, s] of before.entries()) stdout.write(`  ${PAIRS[i]}: ${versionCounts(s)}\n`);

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
        `nats: ${JSON.stringify(sec ? sec.controllerNats : { servers: [natsUrl] })}`,
        `bundle: ${bundle}`,
        `target: {exePath: ${binary}}`,
        "pairs: all",
        "order: standby-first",
        "canary: {pairs: 1, soak: 3s}",
        "waves: {size: 1, maxParallel: 1, soak: 2s}",
        "gates:",
        // 12 × 250 ms: an agent or the controller held up for a second on a busy machine does not fail a soak.
        "  heartbeatGap: {intervals: 12}",
        "  probes: {mode: enforce}",
        "  noRestart: {mode: enforce}",
        "  patchActive: {mode: enforce}",
        "failurePolicy: rollback-all",
        "progressDeadline: 1m",
        `agents: ${JSON.stringify(sec ? { tls: { ca: sec.ca, cert: sec.controller.cert, key: sec.controller.key } } : { insecure: true })}`,
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
      ["drill", "switchover", "--pair", "p1", "--cluster", CLUSTER, ...natsArgs, ...agentArgs, "--json"],
      { signal: running.signal },
    );
    const drillResult =
      drill.code === 0 ? (JSON.parse(drill.stdout.trim().split("\n").pop() ?? "{}") as Record<string, unknown>) : null;
    await sleep(1500, undefined, { signal: running.signal });

    for (const l of loads) l.stop();
    const after = await Promise.all(loads.map((l) => l.done));
    const status = await runHotpatch(["cluster", "status", "--cluster", CLUSTER, ...natsArgs, "--json"], {
      signal: running.signal,
    });

    const failed = after.reduce((n, s) => n + s.failed, 0);
    const wrongAfter = after.reduce((n, s, i) => n + s.wrong - (mid[i]?.wrong ?? 0), 0);
    const summary = {
      seconds: Number(((Date.now() - started) / 1000).toFixed(1)),
      mode: lab ? "lab" : "hardened",
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
      stdout.write(`${JSON.stringify(summary)}\n`);
    } else {
      say("summary");
      stdout.write(`  pair  requests  served  unserved  failed  answers by version\n`);
      for (const [i, p] of summary.pairs.entries()) {
        const s = after[i] as LoadgenSummary;
        const unserved = p.requests - p.served - p.failed; // both nodes said STANDBY (mid-switchover)
        stdout.write(
          `  ${p.pair.padEnd(4)}  ${String(p.requests).padStart(8)}  ${String(p.served).padStart(6)}  ${String(unserved).padStart(8)}  ${String(p.failed).padStart(6)}  ${versionCounts(s)}\n`,
        );
      }
      stdout.write(
        `  rollout: exit ${rollout.code}; wrong answers after it: ${wrongAfter}; failed requests overall: ${failed}\n`,
      );
      if (drillResult) {
        stdout.write(
          `  switchover drill on p1: ${String(drillResult.oldActive)} → ${String(drillResult.newActive)}, detection ${String(drillResult.detectionMs)} ms, takeover ${String(drillResult.takeoverMs)} ms\n`,
        );
      } else {
        stdout.write(`  switchover drill: failed (exit ${drill.code})\n`);
      }
      stdout.write(`  total: ${summary.seconds} s\n`);
    }
    return rollout.code === 0 && failed === 0 && wrongAfter === 0 && drillResult !== null ? 0 : 1;
  } catch (err) {
    if (signal.aborted) return DEMO_INTERRUPTED;
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
    await cleanup();
  }
}
