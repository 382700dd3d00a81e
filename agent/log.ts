/** Structured JSON logs (pino), one logger per agent, stamped with its identity. */
import { type Logger, pino } from "pino";
import type { AgentConfig } from "./config/types.js";

export type { Logger };

/** A pino logger writing JSON lines to `dest` (stderr by default). */
export function createLogger(
  config: Pick<AgentConfig, "node" | "pair" | "cluster" | "logLevel">,
  dest: NodeJS.WritableStream = process.stderr,
): Logger {
  return pino(
    { level: config.logLevel, base: { node: config.node, pair: config.pair, cluster: config.cluster } },
    dest,
  );
}
