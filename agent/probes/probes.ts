/** TCP, HTTP and exec probes, each bounded by its timeout. */
import { connect } from "node:net";
import { deadlineSignal } from "../../common/index.js";
import type { ProbeConfig } from "../config/types.js";
import { runCommand } from "../roles/hooks.js";

/** Outcome of one probe run. */
export interface ProbeOutcome {
  /** Probe name. */
  name: string;
  /** Whether it passed. */
  ok: boolean;
  /** How long it took, milliseconds. */
  latencyMs: number;
  /** Why it failed ("" when it passed). */
  message: string;
}

function tcp(host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    // A connection made in time but not yet seen by an agent that was held up (GC, busy CPU) still
    // counts: the deadline looks only after the pending I/O was handled.
    const deadline = deadlineSignal(timeoutMs);
    const done = (err?: Error) => {
      deadline.dispose();
      sock.destroy();
      if (err) reject(err);
      else resolve();
    };
    deadline.signal.addEventListener(
      "abort",
      () => done(new Error(`no TCP connection to ${host}:${port} within ${timeoutMs} ms`)),
      { once: true },
    );
    sock.once("connect", () => done());
    sock.once("error", (err) => done(new Error(`TCP ${host}:${port}: ${err.message}`)));
  });
}

async function http(url: string, expect: number, timeoutMs: number): Promise<void> {
  const deadline = deadlineSignal(timeoutMs);
  try {
    const res = await fetch(url, { signal: deadline.signal }).catch((err: Error) => {
      throw new Error(
        err.name === "TimeoutError"
          ? `no HTTP answer from ${url} within ${timeoutMs} ms`
          : `HTTP ${url}: ${err.message}`,
      );
    });
    await res.body?.cancel();
    if (res.status !== expect) throw new Error(`HTTP ${url} answered ${res.status}, expected ${expect}`);
  } finally {
    deadline.dispose();
  }
}

/** Runs one probe; never throws. */
export async function runProbe(p: ProbeConfig): Promise<ProbeOutcome> {
  const start = performance.now();
  try {
    if (p.kind === "tcp") await tcp(p.host, p.port, p.timeoutMs);
    else if (p.kind === "http") await http(p.url, p.expectStatus, p.timeoutMs);
    else await runCommand({ argv: p.argv, timeoutMs: p.timeoutMs }, `probe ${p.name}`);
    return { name: p.name, ok: true, latencyMs: Math.round(performance.now() - start), message: "" };
  } catch (err) {
    return {
      name: p.name,
      ok: false,
      latencyMs: Math.round(performance.now() - start),
      message: (err as Error).message,
    };
  }
}
