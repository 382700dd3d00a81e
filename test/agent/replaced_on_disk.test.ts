/**
 * A library bundle through the agent after a package upgrade renamed a new build of the library
 * over the one a process still maps: the agent selects the process by the library's path, compares
 * the bundle's build-id with the mapped build (not the new file), applies the bundle built for it
 * and skips the one built for the new file with EBUILDID naming both build-ids.
 */
import assert from "node:assert/strict";
import { chmod, copyFile, rename } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { RunningAgent } from "../../agent/index.js";
import { readElf } from "../../native/index.js";
import { type AgentServiceClient, Outcome, type ProcessSelector } from "../../proto/index.js";
import { agentClient, agentDoc, call, makeBundle, stage, startTestAgent, tempDir } from "../helpers/agent_harness.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const soname = "libgreet-swap.so";

async function reading(t: RunningFixture): Promise<string> {
  await t.nextLine(/^lib=/); // may predate the last operation
  return t.nextLine(/^lib=/);
}

describe("agent apply of a library bundle after the library was upgraded on disk", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let agent: RunningAgent;
  let client: AgentServiceClient;
  let target: RunningFixture;
  let lib: string;
  let runningId: string;
  let nextId: string;

  const selector = (): ProcessSelector => ({ exePath: "", buildId: "", pid: 0, cgroup: "", libraryPath: lib });
  const apply = (bundleId: string) =>
    call(client, client.apply, {
      bundleId,
      selector: selector(),
      consistency: 0,
      safetyTimeoutMs: 0,
      requestedBy: "ci",
      followNewProcesses: false,
    });

  before(async () => {
    tmp = await tempDir("hotpatch-agent-upgrade-");
    await chmod(tmp.dir, 0o755);
    nats = await startNatsServer();
    const flags = ["-O2", "-shared", "-fPIC", `-Wl,-soname,${soname}`];
    const running = await compileFixture("c/libgreet.c", flags);
    const next = await compileFixture("c/libgreet_next.c", flags);
    const binary = await compileFixture("c/uses_lib.c", ["-O2", "-fPIE", "-pie", "-Wl,--no-as-needed", running]);
    const patchSo = await compileFixture("c/lib_patch.c", ["-O2", "-shared", "-fPIC"]);
    runningId = (await readElf(running)).buildId ?? "";
    nextId = (await readElf(next)).buildId ?? "";
    lib = path.join(tmp.dir, soname);
    await copyFile(running, lib);
    target = await startFixture(binary, [], 10_000, { LD_LIBRARY_PATH: tmp.dir });
    await copyFile(next, `${lib}.new`);
    await rename(`${lib}.new`, lib);

    agent = await startTestAgent(tmp.dir, agentDoc(tmp.dir, "node-a", nats.url, { allow: [lib] }));
    client = agentClient(agent.grpcPort);
    const functions = [{ symbol: "greet_value", replacement: "greet_value_v2" }];
    for (const [id, buildId] of [
      ["for-running", runningId],
      ["for-next", nextId],
    ] as const) {
      const bundle = await makeBundle(tmp.dir, id, { kind: "library", path: lib, buildId }, patchSo, functions);
      await stage(client, id, bundle);
    }
  });
  after(async () => {
    client?.close();
    await agent?.stop();
    await target?.kill();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("skips the bundle built for the new file with EBUILDID, naming both build-ids", async () => {
    const { results } = await apply("for-next");
    assert.deepEqual(
      results.map((r) => [r.pid, r.outcome, r.errorCode]),
      [[target.pid, Outcome.OUTCOME_SKIPPED, "EBUILDID"]],
    );
    assert.ok(results[0]?.message.includes(runningId) && results[0].message.includes(nextId), results[0]?.message);
    assert.equal(await reading(target), "lib=11 libc=41");
  });

  it("applies the bundle built for the library the process still maps", async () => {
    const { results } = await apply("for-running");
    assert.deepEqual(
      results.map((r) => [r.pid, r.outcome]),
      [[target.pid, Outcome.OUTCOME_DONE]],
      results[0]?.message,
    );
    assert.equal(await reading(target), "lib=21 libc=41");
  });
});
