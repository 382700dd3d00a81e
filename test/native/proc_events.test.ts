/** The process-event connector tells us about every exec on the host as it happens. */
import assert from "node:assert/strict";
import { readdir, readFile, readlink } from "node:fs/promises";
import { it } from "node:test";
import { type ExecEvent, monotonicMs, watchExecs } from "../../native/index.js";
import { waitFor } from "../helpers/agent_harness.js";
import { compileFixture, runTool, startFixture } from "../helpers/fixtures.js";

it("an exec event arrives for a newly started process, stamped with the kernel's exec time", async () => {
  const counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
  const seen: ExecEvent[] = [];
  const w = watchExecs((e) => seen.push(e));
  const before = monotonicMs();
  const fixture = await startFixture(counter);
  try {
    const ev = await waitFor("the fixture's exec event", () => seen.find((e) => e.pid === fixture.pid));
    assert.ok(
      ev.execMonoMs >= before && ev.execMonoMs <= monotonicMs(),
      `exec time ${ev.execMonoMs} outside [${before}, now]`,
    );
  } finally {
    w.stop();
    await fixture.kill();
  }
});

it("after stop() no more events arrive, and stopping twice is harmless", async () => {
  const counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
  const seen: ExecEvent[] = [];
  const w = watchExecs((e) => seen.push(e));
  w.stop();
  w.stop();
  const fixture = await startFixture(counter);
  await new Promise((r) => setTimeout(r, 200));
  await fixture.kill();
  assert.equal(seen.filter((e) => e.pid === fixture.pid).length, 0);
});

/** Port ids of this process's own NETLINK_CONNECTOR sockets (by socket inode in /proc/net/netlink). */
async function ownConnectorPorts(): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir("/proc/self/fd")) {
    const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/self/fd/${fd}`).catch(() => ""));
    if (m?.[1]) inodes.add(m[1]);
  }
  const ports: number[] = [];
  for (const line of (await readFile("/proc/net/netlink", "utf8")).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode; Eth 11 is NETLINK_CONNECTOR
    if (f[1] === "11" && f[9] !== undefined && inodes.has(f[9])) ports.push(Number(f[2]));
  }
  return ports;
}

it("an exec event a local process forges and sends to the watcher's socket is dropped; the kernel's own events still arrive", async () => {
  const forger = await compileFixture("c/forge_proc_event.c", ["-O1"]);
  const counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
  const claimed = await startFixture(counter); // running before the watch: no real exec of it follows
  const seen: ExecEvent[] = [];
  const w = watchExecs((e) => seen.push(e));
  try {
    const ports = await ownConnectorPorts();
    assert.ok(ports.length > 0, "the watcher's netlink socket is listed in /proc/net/netlink");
    const out = await runTool(forger, [String(claimed.pid), ...ports.map(String)]);
    const forgerPid = Number(/^sent (\d+)$/.exec(out.trim())?.[1]);
    assert.ok(forgerPid > 0, `the forged datagram was accepted by the socket (forger said ${out.trim()})`);
    // The forger exec'd twice (started, then into /bin/true after its send), and a socket's queue
    // keeps order: once the second event is here, the forged one has been read.
    await waitFor("the forger's exec into /bin/true", () =>
      seen.filter((e) => e.pid === forgerPid).length >= 2 ? true : undefined,
    );
    assert.equal(seen.filter((e) => e.pid === claimed.pid).length, 0, "the forged exec was not delivered");
  } finally {
    w.stop();
    await claimed.kill();
  }
});
