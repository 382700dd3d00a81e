/**
 * Drills on a real pair (nats-server, two `hotpatch agent` processes in managed role mode, two demo
 * services) with 250 ms heartbeats: a few switchovers, failovers killing the active's agent, and
 * failovers killing the active's service, each restored before the next. Prints p50/max of
 * detection and takeover next to the heartbeat interval (the baseline) and the lease ttl (what an
 * agent failover's takeover waits for). A load generator (a failover client of the pair, 200
 * requests/s) runs through each drill and counts the requests no node served, and the services'
 * own HEALTH answers, sampled every few ms, give the longest window with no active node.
 * Target: failover detection ≤ 1 s with 250 ms heartbeats.
 */
import { type DrillOptions, type DrillResult, runDrill } from "../controller/drill/index.js";
import { type LoadgenSummary, startLoadgen } from "../deploy/demo/index.js";
import { startTestPair } from "../test/helpers/pair_harness.js";
import { type RoleWindows, watchServiceRoles } from "./service_roles.js";
import { printTable, quantile } from "./stats.js";

const INTERVAL_MS = 250;
const LEASE_TTL_MS = 1000;
const RUNS = 3;

const pair = await startTestPair({ intervalMs: INTERVAL_MS, leaseTtlMs: LEASE_TTL_MS });
const results: Record<string, DrillResult[]> = { switchover: [], "failover agent": [], "failover service": [] };
const load: Record<string, LoadgenSummary[]> = { switchover: [], "failover agent": [], "failover service": [] };
const windows: Record<string, RoleWindows[]> = { switchover: [], "failover agent": [], "failover service": [] };

/** Runs `drill` while a failover client of the pair sends requests; keeps both results under `what`. */
async function withLoad(what: string, drill: () => Promise<DrillResult>): Promise<void> {
  const endpoints = pair.nodes.map((n) => ({ host: "127.0.0.1", port: pair.servicePort(n) }));
  const roles = watchServiceRoles(endpoints);
  const gen = startLoadgen({
    endpoints,
    strategy: "failover",
    concurrency: 2,
    ratePerSec: 200,
    durationMs: 3_600_000,
    timeoutMs: 500,
  });
  try {
    results[what]?.push(await drill());
  } finally {
    gen.stop();
    load[what]?.push(await gen.done);
    windows[what]?.push(await roles.stop());
  }
}
let failed = false;
try {
  const base: Omit<DrillOptions, "kind"> = {
    nats: [pair.nats.url],
    cluster: pair.cluster,
    pair: pair.pair,
    agentSecurity: { kind: "insecure" },
    timeoutMs: 60_000,
    discoveryMs: 5000,
  };
  for (let i = 0; i < RUNS; i++) {
    await withLoad("switchover", () => runDrill({ ...base, kind: "switchover" }));
    await withLoad("failover agent", () =>
      runDrill({ ...base, kind: "failover", kill: "agent", restore: (n) => pair.startAgent(n.node) }),
    );
    await withLoad("failover service", () =>
      runDrill({ ...base, kind: "failover", kill: "service", restore: (n) => pair.startService(n.node) }),
    );
  }
} catch (err) {
  failed = true;
  process.stderr.write(`drill failed: ${err instanceof Error ? err.message : String(err)}\n`);
} finally {
  await pair.close();
}

const sum = <T>(xs: T[] | undefined, f: (x: T) => number) => (xs ?? []).reduce((a, x) => a + f(x), 0);
const rows = Object.entries(results).map(([what, rs]) => {
  const det = rs.map((r) => r.detectionMs);
  const take = rs.map((r) => r.takeoverMs);
  const gap = (windows[what] ?? []).map((w) => w.noActiveMaxMs);
  return [
    what,
    rs.length,
    `${quantile(det, 0.5)} ms`,
    `${Math.max(...det)} ms`,
    `${quantile(take, 0.5)} ms`,
    `${Math.max(...take)} ms`,
    `${(quantile(det, 0.5) / INTERVAL_MS).toFixed(2)}×`,
    `${quantile(gap, 0.5)} ms`,
    `${Math.max(...gap)} ms`,
    rs.some((r) => r.bothActiveSeen) ? "YES" : "no",
    windows[what]?.some((w) => w.bothActive) ? "YES" : "no",
    rs.every((r) => r.healthyAfter) ? "yes" : "NO",
    `${sum(load[what], (l) => l.failed + l.standby)}/${sum(load[what], (l) => l.requests)}`,
  ];
});
process.stdout.write(`heartbeat interval ${INTERVAL_MS} ms (baseline), managed lease ttl ${LEASE_TTL_MS} ms\n`);
process.stdout.write(
  "no-active: longest window in which neither service answered HEALTH as active; 2 active (services): a HEALTH round saw both\n" +
    "(after an agent kill its dead man's switch demotes the orphaned service before the peer takes over)\n",
);
printTable(
  [
    "drill",
    "runs",
    "detect p50",
    "detect max",
    "takeover p50",
    "takeover max",
    "detect/interval",
    "no-active p50",
    "no-active max",
    "2 active (beats)",
    "2 active (services)",
    "healthy",
    "lost/requests",
  ],
  rows,
);
const failoverMax = Math.max(
  ...[...(results["failover agent"] ?? []), ...(results["failover service"] ?? [])].map((r) => r.detectionMs),
);
const ok = !failed && failoverMax <= 1000;
process.stdout.write(`failover detection max ${failoverMax} ms: ${ok ? "within" : "OVER"} the 1 s target\n`);
process.exitCode = ok ? 0 : 1;
