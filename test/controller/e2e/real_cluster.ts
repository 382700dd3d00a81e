/**
 * A real two-pair cluster on one machine for end-to-end rollout tests: each node is a real
 * `hotpatch agent` process with its own real target process (patch_target), both inside their own
 * PID namespace (`unshare --pid --mount-proc`), so each agent sees only its own "host's" processes
 * even though all nodes share one machine.
 */
import type { ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { spawnNamespacedNode } from "../../../deploy/demo/index.js";

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../bin/hotpatch.js");

/** One node: agent + target in a PID namespace. */
export interface RealNode {
  pair: string;
  node: string;
  grpcPort: number;
  auditLog: string;
  child: ChildProcess;
  /** Lines the target and agent printed so far. */
  output: () => string;
  /** The audit records of this node's agent. */
  audit(): Promise<{ time: string; action: string; result: string; processes?: { pid: number; outcome: string }[] }[]>;
  /** SIGSTOP / SIGCONT the agent (its heartbeats stop / resume). */
  freeze(): void;
  thaw(): void;
  stop(): Promise<void>;
}

export async function startRealNode(o: {
  dir: string;
  cluster: string;
  pair: string;
  node: string;
  role: "active" | "standby";
  natsUrl: string;
  target: string;
}): Promise<RealNode> {
  const auditLog = path.join(o.dir, `${o.cluster}-${o.node}-audit.jsonl`);
  const config = path.join(o.dir, `${o.cluster}-${o.node}.yaml`);
  await writeFile(
    config,
    stringify({
      node: o.node,
      pair: o.pair,
      cluster: o.cluster,
      grpc: { listen: "127.0.0.1:0", insecure: true },
      nats: { servers: [o.natsUrl] },
      heartbeat: { intervalMs: 100 },
      role: { source: "static", role: o.role },
      services: [{ name: "svc", process: { exePath: o.target }, probes: [] }],
      allow: [o.target],
      bundleDir: path.join(o.dir, `${o.cluster}-${o.node}-bundles`),
      auditLog,
      logLevel: "warn",
    }),
  );
  const child = spawnNamespacedNode({
    service: [o.target, "2"],
    agent: [process.execPath, bin, "agent", "--config", config, "--json"],
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out = (out + d.toString()).slice(-200_000);
  });
  child.stderr?.on("data", (d: Buffer) => {
    out = (out + d.toString()).slice(-200_000);
  });
  const grpcPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent ${o.node} did not start: ${out.slice(-2000)}`)), 20_000);
    const check = () => {
      const m = /"started":\{"grpcPort":(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on("data", check);
    child.once("exit", (c) => {
      clearTimeout(timer);
      reject(new Error(`agent ${o.node} exited with ${c}: ${out.slice(-2000)}`));
    });
  });
  // The agent is a child of the namespace's sh; find it to freeze only the agent (unshare and sh
  // carry the same words as arguments, so the match is anchored at the agent's own program).
  const agentPid = async () => {
    const { execFileSync } = await import("node:child_process");
    const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const list = execFileSync("pgrep", ["-f", `^${literal(`${process.execPath} ${bin} agent --config ${config}`)}`])
      .toString()
      .trim()
      .split("\n");
    return Number(list[0]);
  };
  const pid = await agentPid();
  return {
    pair: o.pair,
    node: o.node,
    grpcPort,
    auditLog,
    child,
    output: () => out,
    async audit() {
      const text = await readFile(auditLog, "utf8").catch(() => "");
      return text
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l));
    },
    freeze: () => process.kill(pid, "SIGSTOP"),
    thaw: () => process.kill(pid, "SIGCONT"),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // already gone
      }
      const exited = new Promise((r) => child.once("exit", r));
      // --kill-child: the agent (the namespace's init) dies with unshare, and the kernel then kills the target.
      child.kill("SIGKILL");
      await exited;
    },
  };
}
