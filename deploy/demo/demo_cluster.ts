/**
 * The demo's cluster on one machine: a NATS server and, for each node, the demo service and a real
 * `hotpatch agent` in a PID namespace of their own (`unshare --pid --mount-proc`), so that each
 * agent sees only its own "host's" processes, as on separate machines. Everything listens on
 * loopback; every process started here is ended by `stop()`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { DemoError } from "./errors.js";
import { spawnNamespacedNode } from "./node_namespace.js";
import { roleFileHook, writeRoleFile } from "./service.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? "../../.." : "../..");
const hotpatchBin = path.join(root, "bin/hotpatch.js");

/** A port that was free a moment ago (the kernel's pick for port 0). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new DemoError("ESERVICE_START", `${what} did not come up within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

function ended(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()));
}

/** A NATS server with JetStream, on a free loopback port. */
export interface DemoNats {
  url: string;
  stop(): Promise<void>;
}

export async function startNats(dir: string): Promise<DemoNats> {
  const port = await freePort();
  const store = path.join(dir, "nats");
  await mkdir(store, { recursive: true });
  const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", store], { stdio: "ignore" });
  await waitFor("nats-server", 10_000, async () => ((await portOpen(port)) ? true : undefined));
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      child.kill("SIGTERM");
      await ended(child);
    },
  };
}

/** One node: its service and its agent, in their own PID namespace. */
export interface DemoNode {
  cluster: string;
  pair: string;
  node: string;
  /** Role it started with. */
  role: "active" | "standby";
  /** Where its demo service answers. */
  servicePort: number;
  /** The agent's audit log. */
  auditLog: string;
  /** Ends the namespace: the agent and the service with it. */
  stop(): Promise<void>;
}

export interface DemoNodeOptions {
  dir: string;
  cluster: string;
  pair: string;
  node: string;
  role: "active" | "standby";
  natsUrl: string;
  /** The demo service binary (also the agent's allow-list and the rollout's target). */
  binary: string;
  heartbeatMs: number;
}

export async function startNode(o: DemoNodeOptions): Promise<DemoNode> {
  const servicePort = await freePort();
  const roleFile = path.join(o.dir, `${o.node}.role`);
  const auditLog = path.join(o.dir, `${o.node}-audit.jsonl`);
  const config = path.join(o.dir, `${o.node}.yaml`);
  const log = path.join(o.dir, `${o.node}.log`);
  await writeRoleFile(roleFile, o.role);
  await writeFile(
    config,
    stringify({
      node: o.node,
      pair: o.pair,
      cluster: o.cluster,
      grpc: { listen: "127.0.0.1:0", insecure: true }, // demo mode: loopback only, no TLS
      nats: { servers: [o.natsUrl] },
      heartbeat: { intervalMs: o.heartbeatMs },
      role: {
        source: "static",
        role: o.role,
        // The hooks end once the service answers in its new role, so a switchover waits for nothing else.
        hooks: {
          promote: roleFileHook(roleFile, "active", { servicePort }),
          demote: roleFileHook(roleFile, "standby", { servicePort }),
        },
      },
      services: [
        {
          name: "quote",
          process: { exePath: o.binary },
          probes: [{ name: "port", tcp: { host: "127.0.0.1", port: servicePort }, timeoutMs: 300 }],
        },
      ],
      allow: [o.binary],
      bundleDir: path.join(o.dir, `${o.node}-bundles`),
      auditLog,
      logLevel: "warn",
    }),
  );
  const child = spawnNamespacedNode({
    service: [o.binary, "--port", String(servicePort), "--role-file", roleFile],
    agent: [process.execPath, hotpatchBin, "agent", "--config", config],
    logFile: log,
  });
  const exited = ended(child);
  await waitFor(`node ${o.node}`, 20_000, async () => {
    if (child.exitCode !== null) {
      throw new DemoError(
        "ESERVICE_START",
        `node ${o.node} exited: ${(await readFile(log, "utf8").catch(() => "")).slice(-2000)}`,
      );
    }
    const text = await readFile(log, "utf8").catch(() => "");
    return /listening on gRPC port \d+/.test(text) && /ready \d+ port/.test(text) ? true : undefined;
  });
  return {
    cluster: o.cluster,
    pair: o.pair,
    node: o.node,
    role: o.role,
    servicePort,
    auditLog,
    async stop() {
      child.kill("SIGKILL"); // --kill-child: the kernel ends everything in the namespace
      await exited;
    },
  };
}

/** Runs the `hotpatch` command with the given arguments, its output shown (or collected). */
export function runHotpatch(
  args: string[],
  options: { show?: boolean; signal?: AbortSignal } = {},
): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [hotpatchBin, ...args], {
      stdio: ["ignore", options.show ? "inherit" : "pipe", "inherit"],
      ...(options.signal ? { signal: options.signal } : {}),
    });
    let stdout = "";
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.once("error", (err) => (err.name === "AbortError" ? resolve({ code: 130, stdout }) : reject(err)));
    child.once("exit", (code, sig) => resolve({ code: code ?? (sig ? 128 : 1), stdout }));
  });
}
