/** `hotpatch rollout …`: roll a patch across a cluster's pairs; status, resume, pause, abort, list. */
import type { Command } from "commander";
import { AgentCallError } from "../../agents/index.js";
import { ClusterError, ClusterView, connectNats } from "../../cluster/index.js";
import {
  discoverPairs,
  listRollouts,
  loadPlan,
  PlanError,
  planStages,
  RolloutError,
  type RolloutOutcome,
  readBundleArchive,
  readRollout,
  requestStop,
  resumeRollout,
  startRollout,
} from "../../rollout/index.js";
import { ExitCode } from "../exit_codes.js";
import { createOutput, type Output } from "../output.js";
import { dryRunLines, RolloutPrinter } from "../rollout_view.js";

const exitHelp = `
Exit codes of rollout commands:
  0   done (status/list: printed)
  1   a gate failed and the policy ran (the message names pair, node, gate and value), or an agent,
      NATS or the bundle failed
  2   usage: bad command line, invalid plan (every bad field is listed), unknown rollout, or a
      rollout in a state the command cannot act on
  3   another controller holds the cluster's rollout lease (or this one lost it)
  4   aborted (by \`rollout abort\` or the progress deadline); what it patched was rolled back
  5   paused (by \`rollout pause\`, Ctrl-C, or the pause failure policy); \`rollout resume ID\` goes on
  70  internal error`;

interface CommonOptions {
  json?: boolean;
  nats?: string;
  cluster?: string;
}

function natsServers(opts: CommonOptions): string[] {
  return (opts.nats ?? process.env.HOTPATCH_NATS ?? "nats://127.0.0.1:4222").split(",");
}

/** The exit code of an error. */
export function errorExitCode(err: unknown): ExitCode {
  if (err instanceof PlanError) return ExitCode.Usage;
  if (err instanceof RolloutError) {
    if (err.code === "ELEASE_HELD" || err.code === "ELEASE_LOST") return ExitCode.LeaseHeld;
    if (err.code === "EROLLOUT_NOT_FOUND" || err.code === "EROLLOUT_STATE") return ExitCode.Usage;
    return ExitCode.Failed;
  }
  if (err instanceof ClusterError) return err.code === "EBAD_NAME" ? ExitCode.Usage : ExitCode.Failed;
  if (err instanceof AgentCallError) return ExitCode.Failed;
  return ExitCode.Internal;
}

function outcomeExit(out: Output, outcome: RolloutOutcome): ExitCode {
  switch (outcome.kind) {
    case "done":
      return ExitCode.Ok;
    case "paused":
      return ExitCode.Paused;
    case "aborted":
      for (const e of outcome.rollbackErrors)
        out.fail(new RolloutError("EAGENT", `rollback failed: ${e}`), ExitCode.Failed);
      return ExitCode.Aborted;
    case "failed": {
      const f = outcome.failure;
      const msg = `pair ${f.pair}${f.node ? ` node ${f.node}` : ""} gate ${f.gate} failed: ${f.value}; policy ran, rolled back: ${outcome.rolledBack.join(", ") || "nothing"}`;
      out.fail(new RolloutError(f.code === "EAGENT" ? "EAGENT" : "EGATE_FAILED", msg, { ...f }), ExitCode.Failed);
      for (const e of outcome.rollbackErrors)
        out.fail(new RolloutError("EAGENT", `rollback failed: ${e}`), ExitCode.Failed);
      return ExitCode.Failed;
    }
    case "lease-lost":
      return out.fail(outcome.error, ExitCode.LeaseHeld);
  }
}

function requireCluster(opts: CommonOptions): string {
  if (!opts.cluster) throw new RolloutError("EROLLOUT_STATE", "--cluster NAME is required");
  return opts.cluster;
}

async function dryRun(out: Output, planFile: string, opts: CommonOptions): Promise<ExitCode> {
  const plan = await loadPlan(planFile);
  if (opts.nats) plan.natsServers = natsServers(opts);
  const bundle = await readBundleArchive(plan.bundle);
  let found = null;
  try {
    const nc = await connectNats(plan.natsServers, "hotpatch-controller dry-run", 2000);
    const view = ClusterView.watch(nc, plan.cluster);
    try {
      found = await discoverPairs(view, plan);
    } finally {
      view.close();
      await nc.close();
    }
  } catch (err) {
    // A plan that names its pairs can still be shown without the cluster; otherwise nothing is known.
    if (plan.pairs === "all") throw err;
  }
  const pairs = found ? Object.keys(found.pairNodes).sort() : (plan.pairs as string[]);
  const stages = planStages(plan, pairs);
  if (out.json)
    out.record({
      dryRun: true,
      plan,
      bundleId: bundle.id,
      stages,
      pairs: found?.pairNodes ?? null,
      roles: found?.roles ?? null,
    });
  else for (const l of dryRunLines(plan, bundle.id, stages, found)) out.line(l);
  return ExitCode.Ok;
}

function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.once("SIGINT", onSig);
  process.once("SIGTERM", onSig);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off("SIGINT", onSig);
      process.off("SIGTERM", onSig);
    },
  };
}

export function registerRollout(program: Command): void {
  const rollout = program
    .command("rollout")
    .description("roll a patch across a cluster's 1+1 pairs: standby first, gated on heartbeats, with rollback")
    .option("--plan <file>", "rollout plan (YAML)")
    .option("--dry-run", "print the exact steps without touching anything")
    .option("--nats <urls>", "NATS servers, comma-separated (overrides the plan; default $HOTPATCH_NATS)")
    .option("--id <id>", "rollout id to use (default: generated)")
    .option("--json", "print one JSON event per line")
    .addHelpText("after", exitHelp)
    .action(async (opts: CommonOptions & { plan?: string; dryRun?: boolean; id?: string }) => {
      const out = createOutput(opts.json === true);
      if (!opts.plan) {
        process.exitCode = out.fail(
          new RolloutError(
            "EROLLOUT_STATE",
            "--plan FILE is required (or use a subcommand: status, resume, pause, abort, list)",
          ),
          ExitCode.Usage,
        );
        return;
      }
      const stop = interruptSignal();
      try {
        if (opts.dryRun) {
          process.exitCode = await dryRun(out, opts.plan, opts);
          return;
        }
        const plan = await loadPlan(opts.plan);
        if (opts.nats) plan.natsServers = natsServers(opts);
        const printer = new RolloutPrinter(out);
        const { outcome } = await startRollout(plan, {
          onEvent: (e) => printer.event(e),
          signal: stop.signal,
          ...(opts.id ? { id: opts.id } : {}),
        });
        process.exitCode = outcomeExit(out, outcome);
      } catch (err) {
        process.exitCode = out.fail(err, errorExitCode(err));
      } finally {
        stop.dispose();
      }
    });

  const common = (c: Command) =>
    c
      .requiredOption("--cluster <name>", "cluster the rollout belongs to")
      .option("--nats <urls>", "NATS servers, comma-separated (default $HOTPATCH_NATS or nats://127.0.0.1:4222)")
      .option("--json", "print JSON");

  common(
    rollout.command("resume").description("continue an interrupted or paused rollout").argument("<id>", "rollout id"),
  ).action(async (id: string, _opts: CommonOptions, cmd: Command) => {
    const opts = cmd.optsWithGlobals<CommonOptions>();
    const out = createOutput(opts.json === true);
    const stop = interruptSignal();
    try {
      const printer = new RolloutPrinter(out);
      const { outcome } = await resumeRollout(natsServers(opts), requireCluster(opts), id, {
        onEvent: (e) => printer.event(e),
        signal: stop.signal,
      });
      process.exitCode = outcomeExit(out, outcome);
    } catch (err) {
      process.exitCode = out.fail(err, errorExitCode(err));
    } finally {
      stop.dispose();
    }
  });

  for (const what of ["pause", "abort"] as const) {
    common(
      rollout
        .command(what)
        .description(
          what === "pause"
            ? "stop a rollout at its next step boundary (soaks stop at once); resume goes on"
            : "roll back everything a rollout patched, at once, without waiting out soaks",
        )
        .argument("<id>", "rollout id"),
    ).action(async (id: string, _opts: CommonOptions, cmd: Command) => {
      const opts = cmd.optsWithGlobals<CommonOptions>();
      const out = createOutput(opts.json === true);
      try {
        const printer = new RolloutPrinter(out);
        const r = await requestStop(natsServers(opts), requireCluster(opts), id, what, {
          onEvent: (e) => printer.event(e),
        });
        if (r.handledBy === "running-controller") {
          out.line(`${what} requested; the running controller acts on it now`);
          out.record({ rollout: id, requested: what, handledBy: r.handledBy });
          process.exitCode = ExitCode.Ok;
        } else {
          process.exitCode = outcomeExit(out, r.outcome);
          if (r.outcome.kind === "aborted" || r.outcome.kind === "paused") process.exitCode = ExitCode.Ok;
        }
      } catch (err) {
        process.exitCode = out.fail(err, errorExitCode(err));
      }
    });
  }

  common(rollout.command("status").description("show a rollout's state from KV").argument("<id>", "rollout id")).action(
    async (id: string, _opts: CommonOptions, cmd: Command) => {
      const opts = cmd.optsWithGlobals<CommonOptions>();
      const out = createOutput(opts.json === true);
      try {
        const { record, pairs } = await readRollout(natsServers(opts), requireCluster(opts), id);
        if (out.json) out.record({ record, pairs: Object.fromEntries(pairs) });
        else {
          out.line(
            `rollout ${record.id} · cluster ${record.cluster} · bundle ${record.bundleId} · ${record.status.kind}`,
          );
          for (const stage of record.stages) {
            out.line(`${stage.name}:`);
            for (const p of stage.pairs) {
              const s = pairs.get(p);
              const phase = s?.phase.kind ?? "pending";
              const step = s && s.next < s.steps.length ? ` next step ${s.next + 1} ${s.steps[s.next]?.kind}` : "";
              out.line(`  ${p.padEnd(16)} ${phase.padEnd(12)} patched: ${s?.patched.join(", ") || "-"}${step}`);
            }
          }
        }
        process.exitCode = ExitCode.Ok;
      } catch (err) {
        process.exitCode = out.fail(err, errorExitCode(err));
      }
    },
  );

  common(rollout.command("list").description("list the cluster's rollouts")).action(
    async (_opts: CommonOptions, cmd: Command) => {
      const opts = cmd.optsWithGlobals<CommonOptions>();
      const out = createOutput(opts.json === true);
      try {
        const ids = await listRollouts(natsServers(opts), requireCluster(opts));
        for (const id of ids) {
          out.line(id);
          out.record({ id });
        }
        process.exitCode = ExitCode.Ok;
      } catch (err) {
        process.exitCode = out.fail(err, errorExitCode(err));
      }
    },
  );
}
