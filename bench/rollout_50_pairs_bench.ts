/**
 * A rollout over 50 pairs (100 SIMULATED agents: real gRPC servers and real heartbeats on a real
 * nats-server, in-memory patch state) with zero soak. Measures the controller's own cost: KV state
 * written at every step, gates on heartbeats, bounded parallelism. Target: < 30 s.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { parsePlan, startRollout } from "../controller/rollout/index.js";
import { startNatsServer } from "../test/helpers/nats_server.js";
import { startSimulatedAgent } from "./sim/simulated_agent.js";
import { printTable } from "./stats.js";

const PAIRS = 50;
const INTERVAL_MS = 250;
const MAX_PARALLEL = 10;

const nats = await startNatsServer();
const dir = await mkdtemp(path.join(tmpdir(), "hotpatch-bench-rollout-"));
const nc = await connect({ servers: nats.url });
const agents: Awaited<ReturnType<typeof startSimulatedAgent>>[] = [];
try {
  await writeFile(path.join(dir, "manifest.json"), JSON.stringify({ id: "bench-fix-1" }));
  await writeFile(path.join(dir, "patch.so"), Buffer.alloc(64 * 1024, 1));
  for (let i = 0; i < PAIRS; i++) {
    const pair = `p${String(i).padStart(2, "0")}`;
    for (const [node, role] of [
      [`${pair}-a`, "active"],
      [`${pair}-b`, "standby"],
    ] as const) {
      agents.push(await startSimulatedAgent({ cluster: "bench", pair, node, role, intervalMs: INTERVAL_MS, nc }));
    }
  }
  const plan = parsePlan(
    [
      "cluster: bench",
      `nats: {servers: ["${nats.url}"]}`,
      "bundle: .",
      "target: {exePath: /usr/sbin/simulated}",
      "canary: {pairs: 1, soak: 0s}",
      `waves: {size: ${MAX_PARALLEL * 2}, maxParallel: ${MAX_PARALLEL}, soak: 0s}`,
      "agents: {insecure: true}",
      "discovery: 1s",
    ].join("\n"),
    "bench-plan.yaml",
    dir,
  );
  let events = 0;
  const t0 = performance.now();
  const { outcome } = await startRollout(plan, {
    onEvent: (e) => {
      events++;
      if (process.env.BENCH_VERBOSE) process.stdout.write(`${JSON.stringify(e)}\n`);
    },
  });
  if (outcome.kind === "failed") process.stdout.write(`failure: ${JSON.stringify(outcome.failure)}\n`);
  const ms = performance.now() - t0;
  const patched = agents.reduce((n, a) => n + a.applied(), 0);
  process.stdout.write(
    `rollout over ${PAIRS} simulated pairs (${INTERVAL_MS} ms heartbeats, zero soak, ${MAX_PARALLEL} pairs in parallel)\n`,
  );
  printTable(
    ["what", "value", "target"],
    [
      ["outcome", outcome.kind, "done"],
      ["nodes patched", patched, PAIRS * 2],
      ["events", events, ""],
      ["total s (incl. 1 s discovery)", (ms / 1000).toFixed(2), "< 30"],
      ["per pair ms", (ms / PAIRS).toFixed(0), ""],
    ],
  );
  if (outcome.kind !== "done" || patched !== PAIRS * 2) process.exitCode = 1;
} finally {
  for (const a of agents) await a.stop();
  await nc.close();
  await nats.close();
  await rm(dir, { recursive: true, force: true });
}
