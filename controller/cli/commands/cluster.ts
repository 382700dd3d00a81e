/** `hotpatch cluster status`: every pair, each node's role, health, heartbeat age and patches, from heartbeats. */
import type { Command } from "commander";
import { afterPendingIo } from "../../../common/index.js";
import { ClusterView, connectNats, type NodeView, nodeHealth } from "../../cluster/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput, type Output } from "../output.js";
import { errorExitCode } from "./rollout.js";

interface StatusOptions {
  cluster: string;
  nats?: string;
  json?: boolean;
  watch?: boolean;
  wait: string;
}

function nodeRecord(n: NodeView, now: number) {
  const h = nodeHealth(n, now);
  return {
    pair: n.pair,
    node: n.node,
    role: n.role,
    healthy: h.sick.length === 0,
    heartbeatAgeMs: h.ageMs,
    missedNow: h.missedNow,
    missedTotal: n.missedTotal,
    intervalMs: n.intervalMs,
    sequence: n.sequence,
    runId: n.runId,
    services: n.services,
    patches: n.patches,
    metrics: n.metrics,
    grpcAddress: n.grpcAddress,
  };
}

function table(view: ClusterView): string[] {
  const now = view.now();
  const lines = [
    `${"PAIR".padEnd(14)} ${"NODE".padEnd(14)} ${"ROLE".padEnd(8)} ${"HEALTH".padEnd(9)} ${"HB AGE".padEnd(9)} ${"MISSED".padEnd(6)} PATCHES`,
  ];
  for (const [pair, nodes] of view.pairs()) {
    const warn = nodes.length !== 2 ? `  (pair has ${nodes.length} node(s))` : "";
    nodes.forEach((n, i) => {
      const h = nodeHealth(n, now);
      const health = h.sick.length ? `sick:${h.sick.map((s) => s.name).join(",")}` : "ok";
      const byPatch = new Map<string, string[]>();
      for (const p of n.patches) byPatch.set(p.patchId, [...(byPatch.get(p.patchId) ?? []), p.state]);
      const patches =
        [...byPatch.entries()]
          .map(([id, states]) => `${id}:${[...new Set(states)].join("/")}×${states.length}`)
          .join(" ") || "-";
      const stale = h.alive ? "" : " STALE";
      lines.push(
        `${(i === 0 ? pair : "").padEnd(14)} ${n.node.padEnd(14)} ${n.role.padEnd(8)} ${health.padEnd(9)} ${`${h.ageMs}ms`.padEnd(9)} ${String(h.missedNow).padEnd(6)} ${patches}${stale}${i === 0 ? warn : ""}`,
      );
    });
  }
  return lines;
}

function print(out: Output, view: ClusterView): void {
  if (out.json) {
    const now = view.now();
    out.record({ cluster: view.cluster, atMs: now, nodes: view.nodes().map((n) => nodeRecord(n, now)) });
  } else if (out.live) out.redraw(table(view));
  else for (const l of table(view)) out.line(l);
}

export function registerCluster(program: Command): void {
  const cluster = program.command("cluster").description("what the cluster's agents report in their heartbeats");
  cluster
    .command("status")
    .description("every pair, each node's role, health, heartbeat age and patches")
    .requiredOption("--cluster <name>", "cluster name")
    .option("--nats <urls>", "NATS servers, comma-separated (default $HOTPATCH_NATS or nats://127.0.0.1:4222)")
    .option("--wait <ms>", "how long to listen for heartbeats before printing", "1500")
    .option("--watch", "keep printing every second until interrupted")
    .option("--json", "one JSON document per print")
    .action(async (opts: StatusOptions) => {
      const out = createOutput(opts.json === true);
      try {
        const servers = (opts.nats ?? process.env.HOTPATCH_NATS ?? "nats://127.0.0.1:4222").split(",");
        const nc = await connectNats(servers, "hotpatch cluster status");
        const view = ClusterView.watch(nc, opts.cluster);
        try {
          await new Promise((r) => setTimeout(r, Number(opts.wait) || 1500));
          // Beats that came while this command was held up are read before their ages are printed.
          await new Promise<void>((r) => afterPendingIo(r));
          if (view.nodes().length === 0) {
            out.fail(new Error(`no heartbeats from cluster ${opts.cluster} on ${servers.join(", ")}`), ExitCode.Failed);
            process.exitCode = ExitCode.Failed;
            return;
          }
          print(out, view);
          if (opts.watch) {
            const ac = new AbortController();
            const stop = () => ac.abort();
            process.once("SIGINT", stop);
            process.once("SIGTERM", stop);
            while (!ac.signal.aborted) {
              await new Promise((r) => setTimeout(r, 1000));
              await new Promise<void>((r) => afterPendingIo(r));
              if (!ac.signal.aborted) print(out, view);
            }
          }
          process.exitCode = ExitCode.Ok;
        } finally {
          view.close();
          await nc.close();
        }
      } catch (err) {
        process.exitCode = out.fail(err, errorExitCode(err));
      }
    });
}
