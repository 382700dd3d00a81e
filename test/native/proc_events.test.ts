/** The process-event connector tells us about every exec on the host as it happens. */
import assert from "node:assert/strict";
import { it } from "node:test";
import { type ExecEvent, monotonicMs, watchExecs } from "../../native/index.js";
import { waitFor } from "../helpers/agent_harness.js";
import { compileFixture, startFixture } from "../helpers/fixtures.js";

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
