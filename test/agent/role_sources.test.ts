/** Role sources and hooks on their own: an external role command, static switchovers running hooks, hooks that fail or hang. */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { AgentError } from "../../agent/index.js";
import { ExternalRole } from "../../agent/roles/external_role.js";
import { runCommand } from "../../agent/roles/hooks.js";
import { StaticRole } from "../../agent/roles/static_role.js";
import { tempDir, waitFor } from "../helpers/agent_harness.js";

describe("role sources and hooks", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir("hotpatch-roles-");
  });
  after(() => tmp.cleanup());

  it("an external role command is run again on every poll; its output sets the role", async () => {
    const state = path.join(tmp.dir, "ha-state");
    await writeFile(state, "standby");
    const errors: Error[] = [];
    const role = new ExternalRole(
      { kind: "command", command: { argv: ["/bin/cat", state], timeoutMs: 1000 } },
      30,
      {},
      {},
      (e) => errors.push(e),
    );
    const changes: string[] = [];
    role.onChange((r) => changes.push(r));
    await role.start();
    try {
      assert.equal(role.role, "standby");
      await writeFile(state, "ACTIVE\n");
      await waitFor("active", () => (role.role === "active" ? true : undefined));
      await writeFile(state, "");
      await waitFor("unknown", () => (role.role === "unknown" ? true : undefined));
      assert.deepEqual(changes, ["standby", "active", "unknown"]);
    } finally {
      await role.stop();
    }
  });

  it("a failing role command makes the role unknown and reports the error", async () => {
    const errors: Error[] = [];
    const role = new ExternalRole(
      { kind: "command", command: { argv: ["/bin/false"], timeoutMs: 1000 } },
      1000,
      {},
      {},
      (e) => errors.push(e),
    );
    await role.start();
    await role.stop();
    assert.equal(role.role, "unknown");
    assert.match(errors[0]?.message ?? "", /role command \(\/bin\/false\) exited with 1/);
  });

  it("a static switchover runs the hook with the node's identity, then changes the role", async () => {
    const log = path.join(tmp.dir, "hook.log");
    const role = new StaticRole(
      "standby",
      { promote: { argv: ["/bin/sh", "-c", `echo "promote $HOTPATCH_NODE" >> ${log}`], timeoutMs: 2000 } },
      { HOTPATCH_NODE: "n1" },
    );
    assert.equal(await role.switchover("active"), "active");
    assert.equal((await readFile(log, "utf8")).trim(), "promote n1");
  });

  it("a failing hook leaves the role as it was, with EHOOK and the command's stderr", async () => {
    const role = new StaticRole(
      "active",
      { demote: { argv: ["/bin/sh", "-c", "echo cannot stop >&2; exit 3"], timeoutMs: 2000 } },
      {},
    );
    await assert.rejects(
      role.switchover("standby"),
      (e) => e instanceof AgentError && e.code === "EHOOK" && /exited with 3: cannot stop/.test(e.message),
    );
    assert.equal(role.role, "active");
  });

  it("a hook that hangs is killed at its timeout", async () => {
    const t0 = Date.now();
    await assert.rejects(
      runCommand({ argv: ["/bin/sleep", "30"], timeoutMs: 200 }, "demote hook"),
      (e) => e instanceof AgentError && /timed out after 200 ms/.test(e.message),
    );
    assert.ok(Date.now() - t0 < 10_000);
  });
});
