/** A real metrics page (Prometheus text format) served over HTTP by a separate process, its content set by the test. */
import { type ChildProcess, spawn } from "node:child_process";
import { rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { fixtureSource } from "./fixtures.js";

export interface MetricsPage {
  /** http://127.0.0.1:PORT/metrics */
  url: string;
  /** Serves `text` from the next request on. */
  serve(text: string): Promise<void>;
  /** Answers the next requests with this HTTP status. */
  fail(status: number): Promise<void>;
  /** Never answers the next requests (a hung exporter). */
  hang(): Promise<void>;
  /** Kills the server process and waits for it. */
  close(): Promise<void>;
}

/** Starts the page in its own process; its content lives in `<dir>/page.txt`, replaced atomically. */
export async function startMetricsPage(dir: string, text: string): Promise<MetricsPage> {
  const file = path.join(dir, "page.txt");
  const write = async (t: string) => {
    await writeFile(`${file}.tmp`, t);
    await rename(`${file}.tmp`, file);
  };
  await write(text);
  const child: ChildProcess = spawn(process.execPath, [fixtureSource("metrics/metrics_page.mjs"), file], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`metrics page exited before it was ready: ${out}`)));
  });
  return {
    url: `http://127.0.0.1:${port}/metrics`,
    serve: write,
    fail: (status) => write(`#!status ${status}\n`),
    hang: () => write("#!hang\n"),
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
