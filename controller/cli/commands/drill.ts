/** `hotpatch drill switchover|failover`: swap or crash a pair's active node and measure detection and takeover from heartbeats. */
import { type Command, InvalidArgumentError } from "commander";
import { ClusterError } from "../../cluster/index.js";
import { DrillError, type DrillEvent, type DrillKind, type DrillResult, runDrill } from "../../drill/index.js";
import type { AgentSecurity } from "../../rollout/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput, type Output } from "../output.js";
import { parseMilliseconds } from "./args.js";

const exitHelp = `
Exit codes of drill commands:
  0   the drill completed (after a failover without restore, the pair waits for the restart the
      output names)
  1   the drill was refused (pair not healthy, [EPAIR_UNHEALTHY]) or failed (no detection, no
      takeover, an agent call, the pair not healthy afterwards); the message names the code
  2   usage: bad command line or options`;

interface DrillCliOptions {
  cluster: string;
  pair: string;
  nats?: string;
  json?: boolean;
  insecure?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  timeout: number;
  discovery: number;
  kill?: "agent" | "service";
  service?: string;
  load?: string;
}

function security(o: DrillCliOptions): AgentSecurity {
  const tls = [o.tlsCa, o.tlsCert, o.tlsKey];
  if (o.insecure && tls.some((f) => f !== undefined))
    throw new DrillError("EBAD_ARGUMENT", "give --insecure or --tls-ca/--tls-cert/--tls-key, not both");
  if (o.insecure) return { kind: "insecure" };
  if (o.tlsCa && o.tlsCert && o.tlsKey) return { kind: "mtls", ca: o.tlsCa, cert: o.tlsCert, key: o.tlsKey };
  throw new DrillError(
    "EBAD_ARGUMENT",
    "agents are reached over mTLS: give --tls-ca, --tls-cert and --tls-key (or --insecure for agents without TLS)",
  );
}

function parseKill(v: string): "agent" | "service" {
  if (v !== "agent" && v !== "service") throw new InvalidArgumentError("expected agent or service");
  return v;
}

function eventLine(e: DrillEvent): string | null {
  switch (e.kind) {
    case "pair":
      return `pair healthy: ${e.active} active, ${e.standby} standby, heartbeats every ${e.intervalMs} ms`;
    case "started":
      return e.killed
        ? `killed the ${e.killed.target === "agent" ? "agent" : `service ${e.killed.service}`} of ${e.killed.node} (pid ${e.killed.pid})`
        : "switchover requested";
    case "warning":
      return `warning: ${e.message}`;
    case "restoring":
      return `restoring the ${e.need.target} of ${e.need.node}`;
    default:
      return null;
  }
}

/** The short table of a drill's figures. */
export function drillTable(r: DrillResult): string[] {
  const row = (k: string, v: string) => `  ${k.padEnd(22)} ${v}`;
  const lines = [
    `drill ${r.kind}${r.kill ? ` (kill ${r.kill})` : ""}: pair ${r.pair} of cluster ${r.cluster}`,
    row("old → new active", `${r.oldActive} → ${r.newActive}`),
    row("detection", `${r.detectionMs} ms (${r.detectedBy})`),
    row("takeover", `${r.takeoverMs} ms`),
    row("heartbeat interval", `${r.intervalMs} ms`),
    row("both active seen", r.bothActiveSeen ? "YES" : "no"),
    row("pair healthy after", r.healthyAfter ? "yes" : "no"),
  ];
  if (r.load) {
    const l = r.load;
    lines.push(
      row("requests lost", `${l.lost} of ${l.requests} (${l.failed} failed, ${l.standbyOnly} only STANDBY answers)`),
    );
  }
  if (r.mustRestart) {
    const m = r.mustRestart;
    lines.push(
      row(
        "restart needed",
        `${m.target === "agent" ? "agent" : `service ${m.service}`} on ${m.node} (was pid ${m.pid})`,
      ),
    );
  }
  return lines;
}

function exitOf(err: unknown): ExitCode {
  if (err instanceof DrillError) return err.code === "EBAD_ARGUMENT" ? ExitCode.Usage : ExitCode.Failed;
  if (err instanceof ClusterError) return err.code === "EBAD_NAME" ? ExitCode.Usage : ExitCode.Failed;
  return ExitCode.Internal;
}

async function runCommand(kind: DrillKind, o: DrillCliOptions, out: Output): Promise<ExitCode> {
  const ac = new AbortController();
  const stop = () => ac.abort(new Error("interrupted"));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    const r = await runDrill({
      natsServers: (o.nats ?? process.env.HOTPATCH_NATS ?? "nats://127.0.0.1:4222").split(","),
      cluster: o.cluster,
      pair: o.pair,
      kind,
      ...(kind === "failover" ? { kill: o.kill ?? "agent" } : {}),
      ...(o.service !== undefined ? { service: o.service } : {}),
      agentSecurity: security(o),
      timeoutMs: o.timeout,
      discoveryMs: o.discovery,
      ...(o.load !== undefined ? { load: { endpoints: o.load.split(",").filter(Boolean) } } : {}),
      signal: ac.signal,
      onEvent: (e) => {
        const l = eventLine(e);
        if (l) out.line(l);
      },
    });
    if (out.json) out.record(r);
    else for (const l of drillTable(r)) out.line(l);
    if (!r.healthyAfter && !r.mustRestart) {
      return out.fail(
        new DrillError("EPAIR_UNHEALTHY", `pair ${r.pair} is not healthy after the drill`, { pair: r.pair }),
        ExitCode.Failed,
      );
    }
    return ExitCode.Ok;
  } catch (err) {
    return out.fail(err, exitOf(err));
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}

function common(cmd: Command): Command {
  return cmd
    .requiredOption("--pair <name>", "pair to drill")
    .requiredOption("--cluster <name>", "cluster name")
    .option("--nats <urls>", "NATS servers, comma-separated (default $HOTPATCH_NATS or nats://127.0.0.1:4222)")
    .option("--insecure", "reach the agents' gRPC without TLS (agents started with grpc.insecure)")
    .option("--tls-ca <file>", "CA that signed the agents' certificates (PEM)")
    .option("--tls-cert <file>", "this controller's client certificate (PEM)")
    .option("--tls-key <file>", "its private key (PEM)")
    .option("--timeout <ms>", "deadline of the whole drill", parseMilliseconds, 60_000)
    .option("--discovery <ms>", "how long to listen for heartbeats before judging the pair", parseMilliseconds, 2000)
    .option("--load <endpoints>", "run the demo load generator on these host:port (loopback) through the drill")
    .option("--json", "print the result as one JSON object");
}

export function registerDrill(program: Command): void {
  const drill = program
    .command("drill")
    .description("switch over or fail over a healthy pair and measure detection and takeover from heartbeats")
    .addHelpText("after", exitHelp);
  common(
    drill
      .command("switchover")
      .description("graceful swap: demote the active node, promote the standby (through the agents)"),
  ).action(async (o: DrillCliOptions) => {
    process.exitCode = await runCommand("switchover", o, createOutput(o.json === true));
  });
  common(
    drill
      .command("failover")
      .description("SIGKILL the active node's agent or service (run it on that node's host); the standby takes over"),
  )
    .option("--kill <what>", "agent or service", parseKill, "agent")
    .option("--service <name>", "with --kill service: which watched service (default: the only one)")
    .action(async (o: DrillCliOptions) => {
      process.exitCode = await runCommand("failover", o, createOutput(o.json === true));
    });
}
