/**
 * Role sources and hooks on their own: an external role command, static switchovers running hooks,
 * hooks that fail or hang. Ordering is read from the hooks' own journal (`date` in the hook).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
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
    // Replaced atomically, as an HA manager would: a poll never reads a half-written file.
    const setState = async (text: string) => {
      await writeFile(`${state}.tmp`, text);
      await rename(`${state}.tmp`, state);
    };
    await setState("standby");
    const errors: Error[] = [];
    const role = new ExternalRole(
      { kind: "command", command: { argv: ["/bin/cat", state], timeoutMs: 10_000 } },
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
      await setState("ACTIVE\n");
      await waitFor("active", () => (role.role === "active" ? true : undefined));
      await setState("");
      await waitFor("unknown", () => (role.role === "unknown" ? true : undefined));
      assert.deepEqual(changes, ["standby", "active", "unknown"]);
    } finally {
      await role.stop();
    }
  });

  it("a failing role command makes the role unknown and reports the error", async () => {
    const errors: Error[] = [];
    const role = new ExternalRole(
      { kind: "command", command: { argv: ["/bin/false"], timeoutMs: 10_000 } },
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
      { promote: { argv: ["/bin/sh", "-c", `echo "promote $HOTPATCH_NODE" >> ${log}`], timeoutMs: 10_000 } },
      { HOTPATCH_NODE: "n1" },
    );
    assert.equal(await role.switchover("active"), "active");
    assert.equal((await readFile(log, "utf8")).trim(), "promote n1");
  });

  it("a failing hook leaves the role as it was, with EHOOK and the command's stderr", async () => {
    const role = new StaticRole(
      "active",
      { demote: { argv: ["/bin/sh", "-c", "echo cannot stop >&2; exit 3"], timeoutMs: 10_000 } },
      {},
    );
    await assert.rejects(
      role.switchover("standby"),
      (e) => e instanceof AgentError && e.code === "EHOOK" && /exited with 3: cannot stop/.test(e.message),
    );
    assert.equal(role.role, "active");
  });

  it("static switchovers run one at a time: a demote asked for while the promote hook runs starts after it ended", async () => {
    const journal = path.join(tmp.dir, "serial.journal");
    const hook = (what: string, sleep: string) => ({
      argv: [
        "/bin/sh",
        "-c",
        `echo "${what} start $(date +%s%N)" >> ${journal}; sleep ${sleep}; echo "${what} end $(date +%s%N)" >> ${journal}`,
      ],
      timeoutMs: 10_000,
    });
    const role = new StaticRole("standby", { promote: hook("promote", "0.3"), demote: hook("demote", "0") }, {});
    const [up, down] = await Promise.all([role.switchover("active"), role.switchover("standby")]);
    assert.deepEqual([up, down, role.role], ["active", "standby", "standby"]);
    const lines = (await readFile(journal, "utf8")).trim().split("\n");
    assert.deepEqual(
      lines.map((l) => l.split(" ").slice(0, 2).join(" ")),
      ["promote start", "promote end", "demote start", "demote end"],
    );
  });

  it("an external switchover returns only once the HA manager reports the new role, not at the next poll", async () => {
    const state = path.join(tmp.dir, "ha-confirm");
    const asked = path.join(tmp.dir, "ha-asked");
    await writeFile(state, "standby");
    const role = new ExternalRole(
      { kind: "file", file: state },
      60_000,
      { promote: { argv: ["/bin/sh", "-c", `echo active > ${asked}`], timeoutMs: 10_000 } },
      {},
      () => undefined,
    );
    await role.start();
    try {
      const switching = role.switchover("active");
      // The HA manager (this test) applies the request a while after the hook has returned.
      await waitFor(
        "the hook's request",
        async () => (await readFile(asked, "utf8").catch(() => "")) !== "" || undefined,
      );
      await new Promise((r) => setTimeout(r, 200));
      await writeFile(state, "active");
      assert.equal(await switching, "active");
      assert.equal(role.role, "active");
    } finally {
      await role.stop();
    }
  });

  it("an external switchover fails with EHOOK when the HA manager never reports the new role, and the role stays", async () => {
    const state = path.join(tmp.dir, "ha-stuck");
    await writeFile(state, "standby");
    const role = new ExternalRole(
      { kind: "file", file: state },
      60_000,
      // The timeout bounds the hook and the confirmation together: room for a slow start of /bin/true.
      { promote: { argv: ["/bin/true"], timeoutMs: 2000 } },
      {},
      () => undefined,
    );
    await role.start();
    try {
      await assert.rejects(
        role.switchover("active"),
        (e) => e instanceof AgentError && e.code === "EHOOK" && /still reports standby/.test(e.message),
      );
      assert.equal(role.role, "standby");
    } finally {
      await role.stop();
    }
  });

  it("a hook killed at its timeout takes the processes it started with it", async () => {
    const pidFile = path.join(tmp.dir, "hook-child.pid");
    await assert.rejects(
      runCommand(
        // Room for the shell to start its child and write the pid file before the timeout kills it.
        { argv: ["/bin/sh", "-c", `sleep 30 >/dev/null 2>&1 & echo $! > ${pidFile}; wait`], timeoutMs: 3000 },
        "promote hook",
      ),
      (e) => e instanceof AgentError && e.code === "EHOOK" && /timed out after 3000 ms/.test(e.message),
    );
    const child = Number(await readFile(pidFile, "utf8"));
    assert.ok(child > 0);
    await waitFor("the hook's child to be gone", () => {
      try {
        // A zombie not yet reaped by init still answers kill 0; its /proc state says so.
        process.kill(child, 0);
        return /\) Z /.test(readFileSync(`/proc/${child}/stat`, "utf8")) || undefined;
      } catch {
        return true;
      }
    });
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
