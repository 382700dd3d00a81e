/**
 * Follow rules with the agent in a PID namespace of its own (a container without hostPID, the
 * demo's topology): the kernel's exec events name pids of the initial namespace, which such an
 * agent cannot see, so it scans its own /proc instead, says so at start and in its heartbeats
 * (and so in `cluster status`), and a process started later in its namespace is patched: its own
 * tally shows new answers. An agent in the initial namespaces keeps the exec events.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { readElf } from "../../native/index.js";
import { type AgentServiceClient, Heartbeat, heartbeatSubject } from "../../proto/index.js";
import {
  agentClient,
  agentDoc,
  call,
  makeBundle,
  stage,
  startTestAgent,
  tempDir,
  waitFor,
  writeConfig,
} from "../helpers/agent_harness.js";
import { compileFixture } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/hotpatch.js");
const execFileAsync = promisify(execFile);

/** The next heartbeat of `node` on cluster c1. */
async function nextBeat(nc: NatsConnection, node: string): Promise<Heartbeat> {
  const sub = nc.subscribe(heartbeatSubject({ cluster: "c1", pair: "p1", node }), { max: 1 });
  const timer = setTimeout(() => sub.unsubscribe(), 15_000);
  try {
    for await (const m of sub) return Heartbeat.decode(m.data);
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`no heartbeat from ${node} within 15 s`);
}

/** The tally counts `patch_target` prints: old and new answers since it started. */
function lastTally(out: string): { old: number; new: number } | undefined {
  const m = [...out.matchAll(/tally old=(\d+) new=(\d+)/g)].at(-1);
  return m ? { old: Number(m[1]), new: Number(m[2]) } : undefined;
}

describe("follow rules with the agent in its own PID namespace", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let nc: NatsConnection;
  let target: string;
  let agentNs: ChildProcess | undefined;
  let agentHostPid = 0;
  let agentOut = "";
  let client: AgentServiceClient | undefined;
  const started: ChildProcess[] = [];

  before(async () => {
    tmp = await tempDir("hotpatch-follow-ns-");
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    target = await compileFixture("c/patch_target.c", ["-O1", "-g", "-pthread"]);
  });

  after(async () => {
    for (const c of started) c.kill("SIGKILL");
    client?.close();
    agentNs?.kill("SIGKILL"); // --kill-child: the namespace ends with it
    await nc?.close();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("scans its /proc, says so at start and in its heartbeats, and patches a process started later in its namespace", async () => {
    const { file } = await writeConfig(
      tmp.dir,
      "node-ns",
      agentDoc(tmp.dir, "node-ns", nats.url, { allow: [target], logLevel: "info" }),
    );
    const ns = spawn(
      "unshare",
      [
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
        process.execPath,
        bin,
        "agent",
        "--config",
        file,
        "--json",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    agentNs = ns;
    ns.stdout?.on("data", (d: Buffer) => {
      agentOut += d.toString();
    });
    ns.stderr?.on("data", (d: Buffer) => {
      agentOut += d.toString();
    });
    const grpcPort = await waitFor(
      "the namespaced agent to start",
      () => {
        if (ns.exitCode !== null) throw new Error(`agent exited: ${agentOut}`);
        const m = /"started":\{"grpcPort":(\d+)/.exec(agentOut);
        return m ? Number(m[1]) : undefined;
      },
      30_000,
    );
    // The agent is pid 1 of the namespace, the only child of unshare.
    agentHostPid = Number((await readFile(`/proc/${ns.pid}/task/${ns.pid}/children`, "utf8")).trim());
    assert.ok(agentHostPid > 0);

    assert.match(agentOut, /new processes are found by scanning \/proc every 50 ms: the agent runs in a PID namespace/);
    const beat = await nextBeat(nc, "node-ns");
    assert.equal(beat.newProcesses?.mode, "proc-scan");
    assert.equal(beat.newProcesses?.intervalMs, 50);
    assert.match(beat.newProcesses?.reason ?? "", /PID namespace of its own/);

    const status = await execFileAsync(process.execPath, [
      bin,
      "cluster",
      "status",
      "--cluster",
      "c1",
      "--nats",
      nats.url,
    ]);
    assert.match(
      status.stdout,
      /note: node-ns finds new processes by scanning \/proc every 50 ms: the agent runs in a PID namespace/,
    );

    const c = agentClient(grpcPort);
    client = c;
    const patchSo = await compileFixture("c/patch_compute.c", ["-O1", "-shared", "-fPIC"]);
    const bundle = await makeBundle(
      tmp.dir,
      "fix-ns",
      { path: target, buildId: (await readElf(target)).buildId ?? "" },
      patchSo,
      [{ symbol: "compute", replacement: "compute_v2" }],
    );
    await stage(c, "fix-ns", bundle);
    await call(c, c.apply, {
      bundleId: "fix-ns",
      selector: { exePath: target, buildId: "", pid: 0, cgroup: "", libraryPath: "" },
      consistency: 0,
      safetyTimeoutMs: 10_000,
      requestedBy: "ci",
      followNewProcesses: true,
    });

    // A new process in the agent's namespace, as a service (re)started on that node would be.
    const proc = spawn("nsenter", ["--target", String(agentHostPid), "--pid", "--mount", "--", target, "2"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    started.push(proc);
    let out = "";
    proc.stdout?.on("data", (d: Buffer) => {
      out = (out + d.toString()).slice(-100_000);
    });
    const before = await waitFor("the new process's first tally", () => lastTally(out), 15_000);
    // Its own answers change: the patch reached it without anyone naming its pid.
    const now = await waitFor(
      "new answers from the process started after the apply",
      () => {
        const t = lastTally(out);
        return t && t.new > before.new + 1000 ? t : undefined;
      },
      20_000,
    );
    assert.ok(now.new > 0);
    const audit = (await readFile(path.join(tmp.dir, "node-ns-audit.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const auto = audit.find((l) => l.action === "auto-apply");
    assert.equal(auto?.request.bundleId, "fix-ns");
    assert.equal(auto?.processes[0].outcome, "done");
  });

  it("an agent in the initial namespaces uses the kernel's exec events and says so", async () => {
    const agent = await startTestAgent(tmp.dir, agentDoc(tmp.dir, "node-host", nats.url));
    try {
      const beat = await nextBeat(nc, "node-host");
      assert.deepEqual(beat.newProcesses, { mode: "exec-events", intervalMs: 0, reason: "" });
    } finally {
      await agent.stop();
    }
  });
});
