/** TCP, HTTP and exec probes, each bounded by its timeout. */
import { connect } from "node:net";
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
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no TCP connection to ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.destroy();
      resolve();
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`TCP ${host}:${port}: ${err.message}`));
    });
  });
}

async function http(url: string, expect: number, timeoutMs: number): Promise<void> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) }).catch((err: Error) => {
    throw new Error(
      err.name === "TimeoutError" ? `no HTTP answer from ${url} within ${timeoutMs} ms` : `HTTP ${url}: ${err.message}`,
    );
  });
  await res.body?.cancel();
  if (res.status !== expect) throw new Error(`HTTP ${url} answered ${res.status}, expected ${expect}`);
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
