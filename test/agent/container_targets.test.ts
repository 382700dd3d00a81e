/**
 * A container's paths are its own: a process in another mount namespace whose executable sits at
 * the very path the agent's allow-list names (a copy of the same build, in the container's root,
 * which /proc/PID/exe shows under exactly that path)
 * is neither selected by that path nor allowed by it. The agent patches the host's process and
 * refuses the container's, which keeps running its old code.
 */
import assert from "node:assert/strict";
import { readFile, readlink, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { readElf } from "../../native/index.js";
import { type AgentServiceClient, Outcome, type ProcessSelector } from "../../proto/index.js";
import {
  agentClient,
  type CliAgent,
  call,
  makeBundle,
  stage,
  startCliAgent,
  tempDir,
} from "../helpers/agent_harness.js";
import { compileFixture, type RunningFixture, startContained, startFixture } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const selector = (s: Partial<ProcessSelector>): ProcessSelector => ({
  exePath: "",
  buildId: "",
  pid: 0,
  cgroup: "",
  libraryPath: "",
  ...s,
});

async function patchedMaps(pid: number): Promise<boolean> {
  return /memfd:hotpatch-patch-/.test(await readFile(`/proc/${pid}/maps`, "utf8"));
}

describe("a container whose executable has the allow-listed path", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let agent: CliAgent;
  let client: AgentServiceClient;
  let binary: string;
  let host: RunningFixture;
  let contained: RunningFixture;

  before(async () => {
    tmp = await tempDir("hotpatch-container-");
    nats = await startNatsServer();
    binary = await compileFixture("c/patch_target.c", ["-O2", "-g", "-fPIE", "-pie", "-pthread"]);
    const patchSo = await compileFixture("c/patch_compute.c", ["-O2", "-shared", "-fPIC", "-fcf-protection=full"]);
    host = await startFixture(binary, ["2"]);
    contained = await startContained(tmp.dir, binary, ["2"], [binary]);
    const configFile = path.join(tmp.dir, "agent.yaml");
    await writeFile(
      configFile,
      stringify({
        node: "node-a",
        pair: "p1",
        cluster: "c1",
        grpc: { listen: "127.0.0.1:0", insecure: true },
        nats: { servers: [nats.url] },
        heartbeat: { intervalMs: 100 },
        role: { source: "static", role: "standby" },
        allow: [binary],
        bundleDir: "bundles",
        auditLog: "audit.jsonl",
        metrics: { listen: "127.0.0.1:0" },
        logLevel: "warn",
      }),
    );
    agent = await startCliAgent(configFile);
    client = agentClient(agent.grpcPort);
    const bundle = await makeBundle(
      tmp.dir,
      "fix-compute",
      { path: binary, buildId: (await readElf(binary)).buildId ?? "" },
      patchSo,
      [{ symbol: "compute", replacement: "compute_v2" }],
    );
    await stage(client, "fix-compute", bundle);
  });

  after(async () => {
    client?.close();
    await agent?.kill("SIGTERM");
    await host?.kill();
    await contained?.kill();
    await nats?.close();
    await tmp?.cleanup();
  });

  const apply = (sel: Partial<ProcessSelector>) =>
    call(client, client.apply, {
      bundleId: "fix-compute",
      selector: selector(sel),
      consistency: 0,
      safetyTimeoutMs: 0,
      requestedBy: "ci",
      followNewProcesses: false,
    });

  it("the container's process really shows the allow-listed path, as a file of its own", async () => {
    assert.equal(await readlink(`/proc/${contained.pid}/exe`), binary, "its executable shows the host's path");
    const [theirs, ours] = [await stat(`/proc/${contained.pid}/exe`), await stat(binary)];
    assert.notEqual(`${theirs.dev}:${theirs.ino}`, `${ours.dev}:${ours.ino}`, "but it is another file");
  });

  it("selecting by that path patches the host's process only", async () => {
    const { results } = await apply({ exePath: binary });
    assert.deepEqual(
      results.map((r) => [r.pid, r.outcome]),
      [[host.pid, Outcome.OUTCOME_DONE]],
    );
    assert.equal(await patchedMaps(host.pid), true);
    assert.equal(await patchedMaps(contained.pid), false);
  });

  it("selecting the container's process by pid is refused as not allow-listed, and it is left untouched", async () => {
    await assert.rejects(apply({ pid: contained.pid }), (err: Error & { details?: string }) =>
      /ENOT_ALLOWED/.test(`${err.details ?? ""} ${err.message}`),
    );
    assert.equal(await patchedMaps(contained.pid), false);
    assert.ok(contained.alive());
  });
});
