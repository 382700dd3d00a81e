/**
 * The demo load generator: bounded concurrency, bounded by duration and/or request count, against
 * one or more loopback endpoints of the demo service. It checks every answer against the correct
 * price and counts answers by version, wrong answers, STANDBY answers and failures.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { formatEndpoint, parseEndpoint } from "./endpoints.js";
import { DemoOptionError } from "./errors.js";
import { sendLine } from "./line_client.js";
import { correctPrice, MAX_QUANTITY } from "./price.js";
import type {
  Endpoint,
  FailureKind,
  LineResult,
  LoadgenOptions,
  LoadgenRun,
  LoadgenSummary,
  QuoteOutcome,
  StopReason,
  Strategy,
} from "./types.js";

/** Options after defaults and checks. */
interface Plan {
  endpoints: Endpoint[];
  concurrency: number;
  durationMs: number | null;
  requests: number | null;
  ratePerSec: number | null;
  timeoutMs: number;
  strategy: Strategy;
  maxQuantity: number;
}

function intOption(name: string, value: number | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new DemoOptionError("EBAD_ARGUMENT", `${name} must be an integer from ${min} to ${max}, got ${value}`, {
      option: name,
      value: String(value),
    });
  }
  return value;
}

/** Checks options and fills in defaults; throws DemoOptionError on the first bad one. */
export function planLoad(options: LoadgenOptions): Plan {
  if (options.endpoints.length === 0) {
    throw new DemoOptionError("EBAD_ARGUMENT", "give at least one endpoint (host:port on loopback)", {
      option: "endpoints",
    });
  }
  const endpoints = options.endpoints.map(parseEndpoint);
  const strategy = options.strategy ?? "spread";
  if (strategy !== "spread" && strategy !== "failover") {
    throw new DemoOptionError("EBAD_ARGUMENT", `strategy must be 'spread' or 'failover', got '${strategy}'`, {
      option: "strategy",
      value: String(strategy),
    });
  }
  const requests = intOption("requests", options.requests, 1, 10_000_000) ?? null;
  const durationMs = intOption("durationMs", options.durationMs, 1, 3_600_000) ?? (requests === null ? 10_000 : null);
  const rate = options.ratePerSec;
  if (rate !== undefined && !(Number.isFinite(rate) && rate > 0 && rate <= 1_000_000)) {
    throw new DemoOptionError("EBAD_ARGUMENT", `ratePerSec must be a number above 0 and at most 1000000, got ${rate}`, {
      option: "ratePerSec",
      value: String(rate),
    });
  }
  return {
    endpoints,
    concurrency: intOption("concurrency", options.concurrency, 1, 256) ?? 4,
    durationMs,
    requests,
    ratePerSec: rate ?? null,
    timeoutMs: intOption("timeoutMs", options.timeoutMs, 1, 60_000) ?? 1000,
    strategy,
    maxQuantity: intOption("maxQuantity", options.maxQuantity, 0, MAX_QUANTITY) ?? 1000,
  };
}

/** Reads one answer to `QUOTE quantity`: served (right or wrong price), standby, or a protocol failure. */
export function judgeAnswer(quantity: number, result: Exclude<LineResult, { kind: "aborted" }>): QuoteOutcome {
  if (result.kind === "failure") return { kind: "failed", failure: result.failure };
  if (result.line === "STANDBY") return { kind: "standby" };
  const m = /^(v\d+) (\d+)$/.exec(result.line);
  if (!m || m[1] === undefined || m[2] === undefined) return { kind: "failed", failure: "protocol" };
  return { kind: "served", version: m[1], correct: Number(m[2]) === correctPrice(quantity) };
}

/** Mutable totals of one run; owned by that run only. */
class Tally {
  readonly summary: LoadgenSummary;
  private readonly started = performance.now();

  constructor(plan: Plan) {
    this.summary = {
      endpoints: plan.endpoints.map(formatEndpoint),
      strategy: plan.strategy,
      elapsedMs: 0,
      requests: 0,
      served: 0,
      correct: 0,
      wrong: 0,
      byVersion: {},
      standby: 0,
      failed: 0,
      failures: { connect: 0, timeout: 0, reset: 0, protocol: 0 },
      firstFailureMs: null,
      lastFailureMs: null,
      attempts: 0,
      perEndpoint: plan.endpoints.map((e) => ({
        endpoint: formatEndpoint(e),
        attempts: 0,
        served: 0,
        standby: 0,
        failed: 0,
      })),
      ratePerSec: 0,
      stoppedBy: null,
    };
  }

  now(): number {
    return Math.round(performance.now() - this.started);
  }

  attempt(index: number, outcome: QuoteOutcome): void {
    const e = this.summary.perEndpoint[index];
    if (!e) return;
    e.attempts++;
    this.summary.attempts++;
    if (outcome.kind === "served") e.served++;
    else if (outcome.kind === "standby") e.standby++;
    else e.failed++;
  }

  request(outcome: QuoteOutcome): void {
    const s = this.summary;
    const t = this.now();
    s.requests++;
    if (outcome.kind === "served") {
      s.served++;
      const v = s.byVersion[outcome.version] ?? { correct: 0, wrong: 0, firstMs: t, lastMs: t };
      s.byVersion[outcome.version] = v;
      v.lastMs = t;
      if (outcome.correct) {
        v.correct++;
        s.correct++;
      } else {
        v.wrong++;
        s.wrong++;
      }
    } else if (outcome.kind === "standby") {
      s.standby++;
    } else {
      s.failed++;
      s.failures[outcome.failure]++;
      s.firstFailureMs ??= t;
      s.lastFailureMs = t;
    }
  }

  copy(stoppedBy: StopReason | null): LoadgenSummary {
    const elapsedMs = this.now();
    const s = structuredClone(this.summary);
    s.elapsedMs = elapsedMs;
    s.ratePerSec = elapsedMs > 0 ? Math.round((s.requests * 1000) / elapsedMs) : 0;
    s.stoppedBy = stoppedBy;
    return s;
  }
}

/** Starts a run and returns at once; `done` resolves when it has ended by itself or was stopped. */
export function startLoadgen(options: LoadgenOptions): LoadgenRun {
  const plan = planLoad(options);
  const tally = new Tally(plan);
  const external = options.signal;
  // `pacing` ends waits between requests (stop, end of duration, abort); `inflight` drops requests (abort only).
  const pacing = new AbortController();
  const inflight = new AbortController();
  let stoppedBy: StopReason | null = null;
  let issued = 0;
  let preferred = 0;

  const end = (reason: StopReason) => {
    stoppedBy ??= reason;
    pacing.abort();
  };
  const onAbort = () => {
    end("aborted");
    inflight.abort();
  };
  if (external?.aborted) onAbort();
  else external?.addEventListener("abort", onAbort, { once: true });
  const durationTimer = plan.durationMs === null ? null : setTimeout(() => end("duration"), plan.durationMs);

  const attempt = async (index: number, quantity: number): Promise<QuoteOutcome | null> => {
    const endpoint = plan.endpoints[index] as Endpoint;
    const result = await sendLine(endpoint, `QUOTE ${quantity}`, {
      timeoutMs: plan.timeoutMs,
      signal: inflight.signal,
    });
    if (result.kind === "aborted") return null;
    const outcome = judgeAnswer(quantity, result);
    tally.attempt(index, outcome);
    return outcome;
  };

  const oneRequest = async (i: number, quantity: number): Promise<QuoteOutcome | null> => {
    const n = plan.endpoints.length;
    if (plan.strategy === "spread") return attempt(i % n, quantity);
    let sawStandby = false;
    let lastFailure: FailureKind | null = null;
    const first = preferred;
    for (let k = 0; k < n; k++) {
      const index = (first + k) % n;
      const outcome = await attempt(index, quantity);
      if (outcome === null) return null;
      if (outcome.kind === "served") {
        preferred = index;
        return outcome;
      }
      if (outcome.kind === "standby") sawStandby = true;
      else lastFailure = outcome.failure;
    }
    if (lastFailure !== null) return { kind: "failed", failure: lastFailure };
    return sawStandby ? { kind: "standby" } : { kind: "failed", failure: "connect" };
  };

  const worker = async () => {
    while (stoppedBy === null) {
      if (plan.requests !== null && issued >= plan.requests) {
        end("requests");
        break;
      }
      const i = issued++;
      if (plan.ratePerSec !== null) {
        const wait = (i * 1000) / plan.ratePerSec - tally.now();
        if (wait > 0) {
          try {
            await sleep(wait, undefined, { signal: pacing.signal });
          } catch {
            break; // the run ended while this worker waited for its slot
          }
        }
      }
      const quantity = (i * 7919) % (plan.maxQuantity + 1);
      const outcome = await oneRequest(i, quantity);
      if (outcome !== null) tally.request(outcome);
    }
  };

  const done = Promise.all(Array.from({ length: plan.concurrency }, worker)).then(() => {
    if (durationTimer) clearTimeout(durationTimer);
    external?.removeEventListener("abort", onAbort);
    return tally.copy(stoppedBy ?? "stopped");
  });

  return {
    snapshot: () => tally.copy(stoppedBy),
    stop: () => end("stopped"),
    done,
  };
}

/** Runs to the end and returns the totals. */
export function runLoadgen(options: LoadgenOptions): Promise<LoadgenSummary> {
  return startLoadgen(options).done;
}

/** The totals as a few lines of human text. */
export function formatSummary(s: LoadgenSummary): string {
  const lines = [
    `load generator: ${s.requests} requests in ${(s.elapsedMs / 1000).toFixed(1)} s (${s.ratePerSec}/s) ` +
      `to ${s.endpoints.join(", ")} [${s.strategy}], ended by ${s.stoppedBy ?? "nothing yet"}`,
  ];
  const versions = Object.keys(s.byVersion).sort();
  for (const v of versions) {
    const c = s.byVersion[v];
    if (c) lines.push(`  ${v}: ${c.correct} correct, ${c.wrong} wrong (seen ${c.firstMs}..${c.lastMs} ms)`);
  }
  if (versions.length === 0) lines.push("  no request was served");
  lines.push(`  standby: ${s.standby}`);
  const kinds = (Object.keys(s.failures) as FailureKind[]).filter((k) => s.failures[k] > 0);
  lines.push(
    s.failed === 0
      ? "  failed: 0"
      : `  failed: ${s.failed} (${kinds.map((k) => `${k} ${s.failures[k]}`).join(", ")}; ` +
          `first at ${s.firstFailureMs} ms, last at ${s.lastFailureMs} ms)`,
  );
  for (const e of s.perEndpoint) {
    lines.push(`  ${e.endpoint}: ${e.attempts} attempts, ${e.served} served, ${e.standby} standby, ${e.failed} failed`);
  }
  return lines.join("\n");
}
