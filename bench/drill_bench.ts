/**
 * Drills on a real pair (nats-server, two `hotpatch agent` processes in managed role mode, two demo
 * services) with 250 ms heartbeats: a few switchovers, failovers killing the active's agent, and
 * failovers killing the active's service, each restored before the next. Prints p50/max of
 * detection and takeover next to the heartbeat interval (the baseline) and the lease ttl (what an
 * agent failover's takeover waits for). Target: failover detection ≤ 1 s with 250 ms heartbeats.
 */
import { type DrillOptions, type DrillResult, runDrill } from "../controller/drill/index.js";
import { startTestPair } from "../test/helpers/pair_harness.js";
import { printTable, quantile } from "./stats.js";

const INTERVAL_MS = 250;
const LEASE_TTL_MS = 1000;
const RUNS = 3;

const pair = await startTestPair({ intervalMs: INTERVAL_MS, leaseTtlMs: LEASE_TTL_MS });
const results: Record<string, DrillResult[]> = { switchover: [], "failover agent": [], "failover service": [] };
let failed = false;
try {
  const base: Omit<DrillOptions, "kind"> = {
    natsServers: [pair.nats.url],
    cluster: pair.cluster,
    pair: pair.pair,
    agentSecurity: { kind: "insecure" },
    timeoutMs: 60_000,
    discoveryMs: 5000,
  };
  for (let i = 0; i < RUNS; i++) {
    results.switchover?.push(await runDrill({ ...base, kind: "switchover" }));
    results["failover agent"]?.push(
      await runDrill({ ...base, kind: "failover", kill: "agent", restore: (n) => pair.startAgent(n.node) }),
    );
    results["failover service"]?.push(
      await runDrill({ ...base, kind: "failover", kill: "service", restore: (n) => pair.startService(n.node) }),
    );
  }
} catch (err) {
  failed = true;
  process.stderr.write(`drill failed: ${err instanceof Error ? err.message : String(err)}\n`);
} finally {
  await pair.close();
}

const rows = Object.entries(results).map(([what, rs]) => {
  const det = rs.map((r) => r.detectionMs);
  const take = rs.map((r) => r.takeoverMs);
  return [
    what,
    rs.length,
    `${quantile(det, 0.5)} ms`,
    `${Math.max(...det)} ms`,
    `${quantile(take, 0.5)} ms`,
    `${Math.max(...take)} ms`,
    `${(quantile(det, 0.5) / INTERVAL_MS).toFixed(2)}×`,
    rs.some((r) => r.bothActiveSeen) ? "YES" : "no",
    rs.every((r) => r.healthyAfter) ? "yes" : "NO",
  ];
});
process.stdout.write(`heartbeat interval ${INTERVAL_MS} ms (baseline), managed lease ttl ${LEASE_TTL_MS} ms\n`);
printTable(
  [
    "drill",
    "runs",
    "detect p50",
    "detect max",
    "takeover p50",
    "takeover max",
    "detect/interval",
    "2 active",
    "healthy",
  ],
  rows,
);
const failoverMax = Math.max(
  ...[...(results["failover agent"] ?? []), ...(results["failover service"] ?? [])].map((r) => r.detectionMs),
);
const ok = !failed && failoverMax <= 1000;
process.stdout.write(`failover detection max ${failoverMax} ms: ${ok ? "within" : "OVER"} the 1 s target\n`);
process.exitCode = ok ? 0 : 1;
