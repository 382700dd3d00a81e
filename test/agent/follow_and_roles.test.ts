/**
 * Follow rules and external roles through a running agent: a process started after an Apply with
 * follow_new_processes is handled on its exec (seen in the audit log), the rule survives an agent
 * restart, and an external role file is re-read when it changes.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { RunningAgent } from "../../agent/index.js";
import { readElf } from "../../native/index.js";
import { type AgentServiceClient, Role } from "../../proto/index.js";
import {
  agentClient,
  agentDoc,
  call,
  makeBundle,
  stage,
  startTestAgent,
  tempDir,
  waitFor,
} from "../helpers/agent_harness.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

describe("follow rules and external roles", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let agent: RunningAgent | undefined;
  let client: AgentServiceClient | undefined;
  let counter: string;
  let roleFile: string;
  const fixtures: RunningFixture[] = [];

  const doc = () =>
    agentDoc(tmp.dir, "node-a", nats.url, {
      allow: [counter],
      role: { source: "external", file: roleFile, pollMs: 50 },
    });

  const auditLines = async () =>
    (await readFile(path.join(tmp.dir, "node-a-audit.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));

  const restart = async () => {
    client?.close();
    await agent?.stop();
    agent = await startTestAgent(tmp.dir, doc());
    client = agentClient(agent.grpcPort);
    return client;
  };

  before(async () => {
    tmp = await tempDir("hotpatch-follow-");
    nats = await startNatsServer();
    counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
    roleFile = path.join(tmp.dir, "role");
    await writeFile(roleFile, "standby\n");
    await restart();
  });

  after(async () => {
    for (const f of fixtures) await f.kill();
    client?.close();
    await agent?.stop();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("an external role file is re-read when it changes; anything but active/standby is unknown", async () => {
    const c = client as AgentServiceClient;
    assert.equal((await call(c, c.info, {})).role, Role.ROLE_STANDBY);
    await writeFile(roleFile, "active\n");
    await waitFor("role active", async () =>
      (await call(c, c.info, {})).role === Role.ROLE_ACTIVE ? true : undefined,
    );
    await writeFile(roleFile, "primary\n");
    await waitFor("role unknown", async () =>
      (await call(c, c.info, {})).role === Role.ROLE_UNKNOWN ? true : undefined,
    );
  });

  it("a switchover with no hooks for an external role is refused with FAILED_PRECONDITION", async () => {
    const c = client as AgentServiceClient;
    await assert.rejects(
      call(c, c.switchover, { targetRole: Role.ROLE_ACTIVE, requestedBy: "t" }),
      /FAILED_PRECONDITION.*HA manager/,
    );
  });

  it("a process started after Apply with follow_new_processes is handled at its exec, also after an agent restart", async () => {
    let c = client as AgentServiceClient;
    const patchSo = await compileFixture("c/compute_patch.c", ["-O1", "-shared", "-fPIC"]);
    const bundle = await makeBundle(
      tmp.dir,
      "fix-follow",
      { path: counter, buildId: (await readElf(counter)).buildId ?? "" },
      patchSo,
    );
    await stage(c, "fix-follow", bundle);
    await call(c, c.apply, {
      bundleId: "fix-follow",
      selector: { exePath: counter, buildId: "", pid: 0, cgroup: "", libraryPath: "" },
      consistency: 0,
      // A process caught at its exec must get through its start-up before the check passes; on a
      // machine this busy (CI) that can take longer than the default 2 s.
      safetyTimeoutMs: 10_000,
      requestedBy: "ci",
      followNewProcesses: true,
    });
    for (const round of ["before restart", "after restart"]) {
      if (round === "after restart") c = await restart();
      const f = await startFixture(counter);
      fixtures.push(f);
      const line = await waitFor(`auto-apply of ${f.pid} ${round}`, async () =>
        (await auditLines()).find((l) => l.action === "auto-apply" && l.processes?.[0]?.pid === f.pid),
      );
      assert.equal(line.actor, "insecure");
      assert.equal(line.request.bundleId, "fix-follow");
      assert.deepEqual(line.processes[0], { pid: f.pid, outcome: "done" });
      assert.equal(line.result, "ok");
    }
  });
});
