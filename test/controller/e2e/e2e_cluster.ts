/**
 * What every end-to-end rollout test shares: a nats-server, the fixture target and its bundles,
 * two pairs of real nodes started per test, plan files, and the `hotpatch` CLI run in the
 * background. `useE2eCluster()` is called inside a `describe`; it registers the hooks.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, afterEach, before } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { readElf } from "../../../native/index.js";
import { makeBundle, tempDir } from "../../helpers/agent_harness.js";
import { hotpatchBin, jsonLines } from "../../helpers/cli.js";
import { compileFixture } from "../../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../../helpers/nats_server.js";
import { type RealNode, startRealNode } from "./real_cluster.js";

/** The CLI running in the background, its `--json` events readable as they come. */
export interface RunningCli {
  child: ChildProcess;
  events: () => Record<string, unknown>[];
  exit: Promise<number | null>;
  stderr: () => string;
}

export function startCli(args: string[]): RunningCli {
  const child = spawn(process.execPath, [hotpatchBin, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  return {
    child,
    exit,
    stderr: () => err,
    events: () => jsonLines(out.split("\n").slice(0, -1).join("\n")),
  };
}

/** The shared state of one test file; `cluster` and `nodes` are new for every `startCluster()`. */
export interface E2eCluster {
  tmp: Awaited<ReturnType<typeof tempDir>>;
  nats: NatsServer;
  nc: NatsConnection;
  target: string;
  goodBundle: string;
  badBundle: string;
  nodes: RealNode[];
  cluster: string;
  /** Two pairs: p1 (a active, b standby), p2 (a standby, b active), under a fresh cluster name. */
  startCluster(): Promise<void>;
  /** A plan for `bundle` over the current cluster, with `extra` YAML lines appended. */
  writePlan(bundle: string, extra?: string): Promise<string>;
  node(name: string): RealNode;
  /** When each successful apply happened on that node, from its agent's audit log. */
  applyTimes(name: string): Promise<number[]>;
}

export function useE2eCluster(): E2eCluster {
  let n = 0;
  const e = {
    nodes: [] as RealNode[],
    cluster: "",
    async startCluster() {
      e.cluster = `e2e${++n}`;
      for (const [pair, node, role] of [
        ["p1", "p1-a", "active"],
        ["p1", "p1-b", "standby"],
        ["p2", "p2-a", "standby"],
        ["p2", "p2-b", "active"],
      ] as const) {
        e.nodes.push(
          await startRealNode({
            dir: e.tmp.dir,
            cluster: e.cluster,
            pair,
            node,
            role,
            natsUrl: e.nats.url,
            target: e.target,
          }),
        );
      }
    },
    // The heartbeat gap gate allows 30 intervals (3 s): an agent or the controller held up for a
    // second by a busy machine must not fail a soak, while a frozen agent still fails it in seconds.
    async writePlan(bundle: string, extra = "") {
      const file = path.join(e.tmp.dir, `${e.cluster}.yaml`);
      const addresses = e.nodes.map((x) => `${x.node}: "127.0.0.1:${x.grpcPort}"`).join(", ");
      await writeFile(
        file,
        `cluster: ${e.cluster}
nats: {servers: ["${e.nats.url}"]}
bundle: ${bundle}
target: {exePath: ${e.target}}
canary: {pairs: [p1], soak: 1s}
waves: {size: 1, maxParallel: 1, soak: 500ms}
progressDeadline: 60s
discovery: 1s
gates: {heartbeatGap: {intervals: 30}}
agents: {insecure: true, callTimeout: 20s, nodes: {${addresses}}}
${extra}`,
      );
      return file;
    },
    node: (name: string) => e.nodes.find((x) => x.node === name) as RealNode,
    async applyTimes(name: string) {
      return (await e.node(name).audit())
        .filter((r) => r.action === "apply" && r.result === "ok")
        .map((r) => Date.parse(r.time));
    },
  } as E2eCluster;

  before(async () => {
    e.tmp = await tempDir("hotpatch-e2e-");
    e.nats = await startNatsServer();
    e.nc = await connect({ servers: e.nats.url });
    e.target = await compileFixture("c/patch_target.c", ["-O2", "-g", "-fPIE", "-pie", "-pthread"]);
    const buildId = (await readElf(e.target)).buildId ?? "";
    const fns = [{ symbol: "compute", replacement: "compute_v2" }];
    const good = await compileFixture("c/patch_compute.c", ["-O2", "-shared", "-fPIC"]);
    const bad = await compileFixture("c/patch_compute_crash.c", ["-O2", "-shared", "-fPIC"]);
    await makeBundle(e.tmp.dir, "fix-good", { path: e.target, buildId }, good, fns);
    await makeBundle(e.tmp.dir, "fix-bad", { path: e.target, buildId }, bad, fns);
    e.goodBundle = path.join(e.tmp.dir, "fix-good.tar");
    e.badBundle = path.join(e.tmp.dir, "fix-bad.tar");
  });
  after(async () => {
    for (const x of e.nodes) await x.stop();
    await e.nc?.close();
    await e.nats?.close();
    await e.tmp?.cleanup();
  });
  afterEach(async () => {
    for (const x of e.nodes) await x.stop();
    e.nodes = [];
  });
  return e;
}
