/**
 * Scrapes of the Prometheus text format: an HTTP page or a command's stdout, each bounded by its
 * timeout and the caller's AbortSignal; the text is parsed strictly and reduced to flat names.
 */
import type { ExecScrapeConfig, HttpScrapeConfig, ScrapeConfig } from "../config/types.js";
import { AgentError } from "../errors.js";
import { runCommand } from "../roles/hooks.js";
import { flatName, parseExposition } from "./exposition.js";

/** Largest metrics page read, bytes: a bigger one fails rather than filling the agent's memory. */
const MAX_PAGE_BYTES = 4 * 1024 * 1024;

/** The agent's own key in each service's namespace; a scraped sample must not take it. */
export const RESERVED_NAME = "metrics_up";

async function readCapped(res: Response, url: string): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_PAGE_BYTES) {
      await reader.cancel();
      throw new AgentError("EBAD_METRICS", `${url} sent more than ${MAX_PAGE_BYTES} bytes of metrics`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function fetchText(cfg: HttpScrapeConfig, signal: AbortSignal): Promise<string> {
  try {
    const res = await fetch(cfg.url, { signal, headers: { accept: "text/plain;version=0.0.4;q=1,*/*;q=0.1" } });
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new AgentError("ESCRAPE", `${cfg.url} answered HTTP ${res.status}, expected 200`);
    }
    return await readCapped(res, cfg.url);
  } catch (err) {
    if (err instanceof AgentError) throw err;
    if (signal.aborted && signal.reason instanceof AgentError) throw signal.reason;
    const cause = (err as { cause?: Error }).cause;
    throw new AgentError(
      "ESCRAPE",
      `${cfg.url}: ${(err as Error).message}${cause ? `: ${cause.message}` : ""}`,
      {},
      {
        cause: err,
      },
    );
  }
}

async function execText(cfg: ExecScrapeConfig, signal: AbortSignal): Promise<string> {
  try {
    return await runCommand({ argv: cfg.argv, timeoutMs: cfg.timeoutMs }, "metrics command", {}, signal);
  } catch (err) {
    throw new AgentError("ESCRAPE", (err as Error).message, {}, { cause: err });
  }
}

/**
 * Reduces a parsed page to flat names and values: only `names` (when given), never NaN or ±Inf
 * (a gate compares numbers; a missing value fails it, a NaN could pass a `!=`), at most `maxSamples`.
 */
export function valuesOf(text: string, cfg: Pick<ScrapeConfig, "names" | "maxSamples">): Map<string, number> {
  const wanted = cfg.names ? new Set(cfg.names) : null;
  const kept = parseExposition(text).filter((s) => !wanted || wanted.has(s.name));
  if (kept.length > cfg.maxSamples) {
    throw new AgentError(
      "EBAD_METRICS",
      `${kept.length} samples${wanted ? " of the listed names" : ""}, more than maxSamples (${cfg.maxSamples}); list the metrics you gate on in names, or raise maxSamples`,
    );
  }
  const out = new Map<string, number>();
  for (const s of kept) {
    const key = flatName(s);
    if (key === RESERVED_NAME) {
      throw new AgentError(
        "EBAD_METRICS",
        `the page has a sample named ${RESERVED_NAME}, which the agent reports itself; leave it out with names`,
      );
    }
    if (Number.isFinite(s.value)) out.set(key, s.value);
  }
  return out;
}

/**
 * Reads one scraped source: text from HTTP or a command, then its values. Throws ESCRAPE or
 * EBAD_METRICS. `signal` is the read's deadline (its reason, an AgentError, says why it aborted);
 * a command is also killed after its own timeoutMs.
 */
export async function scrape(cfg: ScrapeConfig, signal: AbortSignal): Promise<Map<string, number>> {
  const text = cfg.kind === "http" ? await fetchText(cfg, signal) : await execText(cfg, signal);
  return valuesOf(text, cfg);
}
