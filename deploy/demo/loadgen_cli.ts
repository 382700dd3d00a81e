/**
 * Command line of the demo load generator (run it as deploy/demo/loadgen). Prints the summary as
 * human text, or as one JSON object with --json. Exit codes: 0 run finished (whatever it counted),
 * 2 bad options, 130 interrupted (the summary of what ran is still printed).
 */
import { parseArgs } from "node:util";
import { DemoError, DemoOptionError } from "./errors.js";
import { formatSummary, startLoadgen } from "./loadgen.js";
import type { LoadgenOptions, Strategy } from "./types.js";

const usage = `usage: loadgen --endpoint HOST:PORT [--endpoint HOST:PORT ...] [options]

Sends "QUOTE <n>" requests to the demo service on loopback and counts the answers by version,
wrong prices, STANDBY answers and failures. Stops by itself.

  --endpoint HOST:PORT   a loopback endpoint (repeat for several)
  --duration TIME        stop after this long: 500ms, 10s, 2m (default 10s unless --requests)
  --requests N           stop after N requests
  --concurrency N        requests in flight at once (default 4)
  --rate N               at most N requests per second in all (default: no cap)
  --timeout MS           deadline of one attempt (default 1000)
  --strategy S           spread (each request to the next endpoint) or failover (a pair's client)
  --max-quantity N       quantities asked for cycle through 0..N (default 1000)
  --json                 print the summary as one JSON object
`;

function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!m) throw new DemoOptionError("EBAD_ARGUMENT", `--duration '${text}' is not a time like 500ms, 10s or 2m`);
  const scale = m[2] === "m" ? 60_000 : m[2] === "s" ? 1000 : 1;
  return Math.round(Number(m[1]) * scale);
}

function parseNumber(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) {
    throw new DemoOptionError("EBAD_ARGUMENT", `--${name} '${text}' is not a number`, { option: name, value: text });
  }
  return n;
}

const cliOptions = {
  endpoint: { type: "string", multiple: true },
  duration: { type: "string" },
  requests: { type: "string" },
  concurrency: { type: "string" },
  rate: { type: "string" },
  timeout: { type: "string" },
  strategy: { type: "string" },
  "max-quantity": { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;

function parseCommandLine(args: string[]) {
  return parseArgs({ args, options: cliOptions, strict: true, allowPositionals: false }).values;
}

async function main(argv: string[]): Promise<number> {
  let values: ReturnType<typeof parseCommandLine>;
  try {
    values = parseCommandLine(argv);
  } catch (err) {
    process.stderr.write(`loadgen: ${(err as Error).message}\n${usage}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const abort = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    abort.abort();
  };
  process.once("SIGINT", onSigint);
  process.once("SIGTERM", onSigint);
  try {
    const options: LoadgenOptions = { endpoints: values.endpoint ?? [], signal: abort.signal };
    if (values.duration !== undefined) options.durationMs = parseDuration(values.duration);
    const numbers: [keyof LoadgenOptions, string, string | undefined][] = [
      ["requests", "requests", values.requests],
      ["concurrency", "concurrency", values.concurrency],
      ["ratePerSec", "rate", values.rate],
      ["timeoutMs", "timeout", values.timeout],
      ["maxQuantity", "max-quantity", values["max-quantity"]],
    ];
    for (const [key, name, text] of numbers) {
      const n = parseNumber(name, text);
      if (n !== undefined) Object.assign(options, { [key]: n });
    }
    if (values.strategy !== undefined) options.strategy = values.strategy as Strategy;
    const summary = await startLoadgen(options).done;
    process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : `${formatSummary(summary)}\n`);
    return interrupted ? 130 : 0;
  } catch (err) {
    if (err instanceof DemoError) {
      if (values.json) process.stderr.write(`${JSON.stringify({ error: { code: err.code, message: err.message } })}\n`);
      else process.stderr.write(`loadgen: error [${err.code}]: ${err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
  }
}

process.exitCode = await main(process.argv.slice(2));
