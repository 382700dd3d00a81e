/**
 * A real 1+1 pair on loopback for drills: a nats-server, two demo services (each its own copy of
 * the binary, on a fixed free port, role from a role file) and two real `hotpatch agent` processes
 * in managed role mode whose promote/demote hooks rewrite the role files. Everything it starts is
 * stopped by close().
 */
import { copyFile, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import {
  buildDemoService,
  type DemoService,
  roleFileHook,
  sendLine,
  startDemoService,
  writeRoleFile,
} from "../../deploy/demo/index.js";
import { agentDoc, type CliAgent, startCliAgent, tempDir, waitFor, writeConfig } from "./agent_harness.js";
import { switchesEnded } from "./fence_switches.js";
import { freePort, type NatsServer, startNatsServer } from "./nats_server.js";

/** Settings of a test pair. */
export interface PairSettings {
  /** Heartbeat interval of both agents, ms. */
  intervalMs: number;
  /** Lease ttl of the managed role, ms (renew and demote deadlines follow from it). */
  leaseTtlMs: number;
  /** Cluster name (default c1). */
  cluster?: string;
  /** Pair name (default p1). */
  pair?: string;
  /** Every hook run also writes `<node> <role> start|end <ns since the epoch>` lines, from the hook itself, to the journal. */
  hookJournal?: boolean;
}

/** One line of the hook journal. */
export interface HookRun {
  /** Node whose agent ran the hook. */
  node: string;
  /** The role the hook moves its service to. */
  role: "active" | "standby";
  /** Whether the hook was starting or had finished (end is written only when it succeeded). */
  phase: "start" | "end";
  /** When, by the hook's own clock reading (`date +%s%N`), ns since the epoch. */
  ns: bigint;
}

interface NodeParts {
  binary: string;
  roleFile: string;
  port: number;
  configFile: string;
  agent: CliAgent | null;
  service: DemoService | null;
}

export interface TestPair {
  nats: NatsServer;
  cluster: string;
  pair: string;
  /** Node names, the first started (and so first active) first. */
  nodes: [string, string];
  /** The demo service's `HEALTH` answer on `node` (e.g. `OK active v1`), or the failure. */
  health(node: string): Promise<string>;
  /** Starts the node's agent (again). */
  startAgent(node: string): Promise<void>;
  /** Starts the node's demo service (again), on its port, following its role file. */
  startService(node: string): Promise<void>;
  /** Pid of the node's agent process, or 0. */
  agentPid(node: string): number;
  /** Pid of the node's demo service, or 0. */
  servicePid(node: string): number;
  /** Port the node's demo service listens on (the same across restarts). */
  servicePort(node: string): number;
  /** The hook journal so far (empty without `hookJournal`). */
  hookRuns(): Promise<HookRun[]>;
  /** Kills everything and removes the temp folder. */
  close(): Promise<void>;
}

export async function startTestPair(s: PairSettings): Promise<TestPair> {
  const cluster = s.cluster ?? "c1";
  const pair = s.pair ?? "p1";
  const tmp = await tempDir("hotpatch-drill-");
  const nats = await startNatsServer();
  const built = await buildDemoService(path.join(tmp.dir, "quote_service"));
  const nodes: [string, string] = [`${pair}-a`, `${pair}-b`];
  const journal = path.join(tmp.dir, "hooks.journal");
  const parts = new Map<string, NodeParts>();

  const part = (node: string): NodeParts => {
    const p = parts.get(node);
    if (!p) throw new Error(`no node ${node}`);
    return p;
  };

  const pairObj: TestPair = {
    nats,
    cluster,
    pair,
    nodes,
    async health(node) {
      const r = await sendLine({ host: "127.0.0.1", port: part(node).port }, "HEALTH", { timeoutMs: 2000 });
      return r.kind === "answer" ? r.line : r.kind === "failure" ? `failure ${r.failure}` : "aborted";
    },
    async startAgent(node) {
      const p = part(node);
      await p.agent?.kill("SIGKILL");
      p.agent = await startCliAgent(p.configFile);
    },
    async startService(node) {
      const p = part(node);
      await p.service?.kill();
      p.service = await startDemoService({ binary: p.binary, port: p.port, roleFile: p.roleFile });
    },
    agentPid(node) {
      return part(node).agent?.child.pid ?? 0;
    },
    servicePid(node) {
      return part(node).service?.pid ?? 0;
    },
    servicePort(node) {
      return part(node).port;
    },
    async hookRuns() {
      const text = await readFile(journal, "utf8").catch(() => "");
      return text
        .trim()
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => {
          const [node = "", role, phase, ns = "0"] = l.split(" ");
          return { node, role: role as HookRun["role"], phase: phase as HookRun["phase"], ns: BigInt(ns) };
        });
    },
    async close() {
      for (const p of parts.values()) {
        await p.agent?.kill("SIGKILL").catch(() => undefined);
        await p.service?.kill().catch(() => undefined);
      }
      // The killed active agent's dead man's switch runs its demote hook, which writes in tmp.
      await switchesEnded(tmp.dir).catch(() => undefined);
      await nats.close();
      await tmp.cleanup();
    },
  };

  try {
    for (const node of nodes) {
      const dir = path.join(tmp.dir, node);
      await mkdir(dir);
      // Each node runs its own copy, so each agent's exePath selector finds only its own service.
      const binary = path.join(dir, "quote_service");
      await copyFile(built, binary);
      const roleFile = path.join(dir, "role");
      await writeRoleFile(roleFile, "standby");
      const port = await freePort();
      const hook = (role: "active" | "standby") => {
        const run = roleFileHook(roleFile, role, { servicePort: port });
        if (!s.hookJournal) return { run, timeoutMs: 5000 };
        // The journal's lines come from the hook's own process, before and after the real hook.
        const wrap =
          'j=$1 r=$2; shift 2; echo "$HOTPATCH_NODE $r start $(date +%s%N)" >>"$j"; "$@" || exit; ' +
          'echo "$HOTPATCH_NODE $r end $(date +%s%N)" >>"$j"';
        return { run: ["/bin/sh", "-c", wrap, "journal", journal, role, ...run], timeoutMs: 5000 };
      };
      const doc = agentDoc(tmp.dir, node, nats.url, {
        cluster,
        pair,
        heartbeat: { intervalMs: s.intervalMs },
        metrics: undefined,
        role: {
          source: "managed",
          leaseTtlMs: s.leaseTtlMs,
          demoteAfterMs: Math.floor(s.leaseTtlMs * 0.4),
          renewMs: Math.max(10, Math.floor(s.leaseTtlMs / 10)),
          bucket: "drill_roles",
          hooks: { promote: hook("active"), demote: hook("standby") },
        },
        services: [
          {
            name: "quote",
            process: { exePath: binary },
            probes: [{ name: "port", tcp: { host: "127.0.0.1", port }, timeoutMs: 500 }],
          },
        ],
      });
      const { file } = await writeConfig(tmp.dir, node, doc);
      parts.set(node, { binary, roleFile, port, configFile: file, agent: null, service: null });
      await pairObj.startService(node);
    }
    // The first agent takes the lease before the second starts, so roles are known in advance.
    await pairObj.startAgent(nodes[0]);
    await waitFor("the first node to become active", async () =>
      (await pairObj.health(nodes[0])).startsWith("OK active") ? true : undefined,
    );
    await pairObj.startAgent(nodes[1]);
    return pairObj;
  } catch (err) {
    await pairObj.close();
    throw err;
  }
}
