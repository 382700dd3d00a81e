/** Starting real agents for tests: config files on disk, dev certificates, gRPC clients, bundles. */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  type ChannelCredentials,
  type ClientReadableStream,
  credentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { pino } from "pino";
import { create as createTar } from "tar";
import { stringify } from "yaml";
import { loadConfig, type RunningAgent, startAgent } from "../../agent/index.js";
import { signManifest } from "../../bundle/index.js";
import { type DevCerts, makeDevCerts } from "../../deploy/tls/dev_ca.js";
import { AgentServiceClient, type StageBundleResponse } from "../../proto/index.js";

/** A temp folder removed by `cleanup()`. */
export async function tempDir(prefix: string): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes `doc` as YAML into `dir` and loads it through the real config loader. */
export async function writeConfig(dir: string, name: string, doc: Record<string, unknown>) {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, stringify(doc));
  return { file, config: await loadConfig(file) };
}

/** A config document for one agent with sensible test defaults; `extra` overrides top-level keys. */
export function agentDoc(
  dir: string,
  node: string,
  natsUrl: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    node,
    pair: "p1",
    cluster: "c1",
    grpc: { listen: "127.0.0.1:0", insecure: true },
    nats: { servers: [natsUrl] },
    heartbeat: { intervalMs: 100 },
    role: { source: "static", role: "standby" },
    allow: [],
    bundleDir: path.join(dir, `${node}-bundles`),
    auditLog: path.join(dir, `${node}-audit.jsonl`),
    metrics: { listen: "127.0.0.1:0" },
    logLevel: "warn",
    ...extra,
  };
}

/** Starts an agent from a config document; logs go nowhere unless HOTPATCH_TEST_LOGS is set. */
export async function startTestAgent(dir: string, doc: Record<string, unknown>): Promise<RunningAgent> {
  const { config } = await writeConfig(dir, String(doc.node), doc);
  const logger = pino({ level: process.env.HOTPATCH_TEST_LOGS ? "debug" : "silent" });
  return startAgent(config, { version: "test", logger });
}

export { type DevCerts, makeDevCerts };

/** A gRPC client of an agent on 127.0.0.1. */
export function agentClient(
  port: number,
  creds: ChannelCredentials = credentials.createInsecure(),
): AgentServiceClient {
  return new AgentServiceClient(`127.0.0.1:${port}`, creds, { "grpc.ssl_target_name_override": "localhost" });
}

/**
 * Resolves once the agent has subscribed a WatchEvents stream (its response headers came): every
 * event from then on reaches the stream's listeners. Attach them before awaiting this.
 */
export function subscribed(stream: ClientReadableStream<unknown>, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`WatchEvents not subscribed within ${timeoutMs} ms`)), timeoutMs);
    stream.once("metadata", () => {
      clearTimeout(timer);
      resolve();
    });
    stream.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** mTLS client credentials from dev certificate files. */
export async function clientCredentials(ca: string, cert?: string, key?: string): Promise<ChannelCredentials> {
  return credentials.createSsl(
    await readFile(ca),
    key ? await readFile(key) : null,
    cert ? await readFile(cert) : null,
  );
}

type Unary<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, res: Res) => void,
) => unknown;

/** Calls a unary method with a deadline and returns the response (rejects with the ServiceError). */
export function call<Req, Res>(
  client: AgentServiceClient,
  method: Unary<Req, Res>,
  req: Req,
  timeoutMs = 10_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** Uploads a bundle archive with StageBundle; `announce` lets a test lie in the header. */
export function stage(
  client: AgentServiceClient,
  bundleId: string,
  archive: Buffer,
  announce: { sha256?: string; size?: number } = {},
): Promise<StageBundleResponse> {
  return new Promise((resolve, reject) => {
    const s = client.stageBundle(new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
    s.write({
      part: {
        $case: "header",
        value: {
          bundleId,
          size: announce.size ?? archive.length,
          sha256: announce.sha256 ?? createHash("sha256").update(archive).digest("hex"),
        },
      },
    });
    for (let off = 0; off < archive.length; off += 16 * 1024)
      s.write({ part: { $case: "chunk", value: archive.subarray(off, off + 16 * 1024) } });
    s.end();
  });
}

/** Builds a bundle archive (tar: manifest.json + patch.so) for `target` from a compiled patch .so. */
export async function makeBundle(
  dir: string,
  id: string,
  target: { kind?: "executable" | "library"; path?: string; buildId: string },
  soFile: string,
  functions = [{ symbol: "compute", replacement: "compute_fixed" }],
  /** Private key (PEM) to sign the manifest with (manifest.sig), as `hotpatch build --sign` does. */
  signWith?: string,
): Promise<Buffer> {
  const work = await mkdtemp(path.join(dir, "bundle-"));
  const so = await readFile(soFile);
  await writeFile(path.join(work, "patch.so"), so);
  // bundle/'s manifest schema 1
  const manifest = {
    schema: 1,
    id,
    target: { kind: "executable", ...target },
    functions,
    loader: "mmap",
    sha256: createHash("sha256").update(so).digest("hex"),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  await writeFile(path.join(work, "manifest.json"), manifestBytes);
  const files = ["manifest.json", "patch.so"];
  if (signWith) {
    await writeFile(path.join(work, "manifest.sig"), await signManifest(manifestBytes, signWith));
    files.push("manifest.sig");
  }
  const archive = path.join(dir, `${id}${signWith ? "-signed" : ""}.tar`);
  await createTar({ file: archive, cwd: work }, files);
  return readFile(archive);
}

/** Polls `check` every `everyMs` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  everyMs = 20,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The value, or a test failure naming what was missing. */
export function must<T>(v: T | null | undefined, what: string): T {
  if (v === null || v === undefined) throw new Error(`missing ${what}`);
  return v;
}

/** An agent run as an operator runs it: `hotpatch agent --config FILE --json` in its own process. */
export interface CliAgent {
  grpcPort: number;
  metricsPort: number | null;
  child: ChildProcess;
  /** Sends `signal` and waits for the exit; resolves with the exit code (null after a signal kill). */
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

const binPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/hotpatch.js");

export async function startCliAgent(configFile: string): Promise<CliAgent> {
  const child = spawn("node", [binPath, "agent", "--config", configFile, "--json"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const started = await new Promise<{ grpcPort: number; metricsPort: number | null }>((resolve, reject) => {
    let out = "";
    let err = "";
    child.stderr?.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.includes('"started"'));
      if (line) resolve(JSON.parse(line).started);
    });
    void exited.then((code) => reject(new Error(`agent exited with ${code}: ${err}`)));
  });
  return {
    ...started,
    child,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
