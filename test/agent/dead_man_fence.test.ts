/**
 * The dead man's switch of a managed active node, seen from outside: `hotpatch agent` runs in its
 * own process, its hooks write a journal (`<node> <hook> <who>`, where who is `agent-ended` when the
 * switch ran the hook), and the switch is found as a process by its command line. Leases last minutes
 * here, so nothing is the work of a lease expiring.
 */
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Role } from "../../proto/index.js";
import {
  agentClient,
  agentDoc,
  type CliAgent,
  call,
  startCliAgent,
  tempDir,
  waitFor,
  writeConfig,
} from "../helpers/agent_harness.js";
import { fenceSwitches, switchesEnded } from "../helpers/fence_switches.js";
import { processState } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

describe("the dead man's switch of a managed active node", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let journal: string;
  let configFile: string;
  let agent: CliAgent | null = null;

  const lines = async () => (await readFile(journal, "utf8").catch(() => "")).split("\n").filter((l) => l !== "");
  /** Pids of live switch processes of this test (their command line holds the journal's path). */
  const switches = () => fenceSwitches(journal);
  const gone = async (pid: number) => {
    const state = await processState(pid);
    return state === null || state === "Z" || state === "X";
  };

  /** Starts the agent and waits until it is active with its switch armed; returns the switch's pid. */
  const startActive = async (): Promise<number> => {
    const before = (await lines()).length;
    agent = await startCliAgent(configFile);
    await waitFor("the promote hook", async () =>
      (await lines()).slice(before).includes("a promote agent") ? true : undefined,
    );
    const [pid] = await waitFor("the switch process", async () => {
      const s = await switches();
      return s.length === 1 ? s : undefined;
    });
    return pid as number;
  };

  before(async () => {
    tmp = await tempDir("hotpatch-deadman-");
    journal = path.join(tmp.dir, "hooks.journal");
    nats = await startNatsServer();
    // A switch's hook sleeps as long as the file `slow` says (0 when absent), then writes its line.
    const slow = path.join(tmp.dir, "slow");
    const script =
      `[ -n "$HOTPATCH_FENCE" ] && sleep "$(cat "${slow}" 2>/dev/null || echo 0)"; ` +
      `echo "$HOTPATCH_NODE $1 \${HOTPATCH_FENCE:-agent}" >> "${journal}"`;
    const hook = (h: string) => ({ run: ["/bin/sh", "-c", script, "hook", h], timeoutMs: 10_000 });
    ({ file: configFile } = await writeConfig(
      tmp.dir,
      "a",
      agentDoc(tmp.dir, "a", nats.url, {
        metrics: undefined,
        role: {
          source: "managed",
          leaseTtlMs: 600_000,
          demoteAfterMs: 500_000,
          renewMs: 200_000,
          bucket: "deadman_test",
          hooks: { promote: hook("promote"), demote: hook("demote") },
        },
      }),
    ));
  });

  after(async () => {
    await agent?.kill("SIGKILL");
    for (const pid of await switches()) process.kill(pid, "SIGKILL");
    await nats?.close();
    await tmp?.cleanup();
  });

  it("demotes the service at once when the agent is killed while active", async () => {
    const sw = await startActive();
    const before = (await lines()).length;
    await agent?.kill("SIGKILL");
    await waitFor("the switch's demote hook", async () =>
      (await lines()).slice(before).includes("a demote agent-ended") ? true : undefined,
    );
    await waitFor("the switch to end", async () => ((await gone(sw)) ? true : undefined));
    assert.deepEqual((await lines()).slice(before), ["a demote agent-ended"]);
  });

  it("keeps a restarted agent's hooks waiting until the killed run's switch has finished", async () => {
    await startActive();
    const before = (await lines()).length;
    await writeFile(path.join(tmp.dir, "slow"), "4");
    try {
      await agent?.kill("SIGKILL");
      // Restarted at once (faster than systemd's RestartSec): its promote must not overtake the demote.
      await startActive();
    } finally {
      await rm(path.join(tmp.dir, "slow"), { force: true });
    }
    assert.deepEqual((await lines()).slice(before), ["a demote agent-ended", "a promote agent"]);
    await agent?.kill("SIGKILL");
    await switchesEnded(journal);
  });

  it("runs nothing when the agent stops gracefully: the agent demotes once, itself", async () => {
    const sw = await startActive();
    const before = (await lines()).length;
    assert.equal(await agent?.kill("SIGTERM"), 0);
    await waitFor("the switch to end", async () => ((await gone(sw)) ? true : undefined));
    assert.deepEqual((await lines()).slice(before), ["a demote agent"]);
  });

  it("is disarmed by a switchover to standby, so a later kill runs no second demote", async () => {
    const sw = await startActive();
    const before = (await lines()).length;
    const client = agentClient((agent as CliAgent).grpcPort);
    try {
      const r = await call(client, client.switchover, { targetRole: Role.ROLE_STANDBY, requestedBy: "test" }, 30_000);
      assert.equal(r.role, Role.ROLE_STANDBY);
    } finally {
      client.close();
    }
    await waitFor("the switch to end", async () => ((await gone(sw)) ? true : undefined));
    await agent?.kill("SIGKILL");
    assert.deepEqual(await switches(), []);
    assert.deepEqual((await lines()).slice(before), ["a demote agent"]);
  });
});
