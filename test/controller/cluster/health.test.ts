/** Node and pair health are judged once, from heartbeat age in intervals, with the caller's allowance. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ALIVE_INTERVALS, applyHeartbeat, nodeHealth } from "../../../controller/cluster/index.js";
import { Heartbeat, Role } from "../../../proto/index.js";

const beat = (healthy: boolean) =>
  applyHeartbeat(
    undefined,
    Heartbeat.fromPartial({
      cluster: "c1",
      pair: "p1",
      node: "a",
      role: Role.ROLE_ACTIVE,
      sequence: 1,
      intervalMs: 100,
      runId: "r",
      services: [{ name: "quote", healthy, probes: [{ name: "tcp", ok: healthy, message: healthy ? "" : "refused" }] }],
    }),
    10_000,
  );

describe("node health", () => {
  it("a node is alive up to ALIVE_INTERVALS intervals, or as many as the caller allows", () => {
    const n = beat(true);
    assert.equal(ALIVE_INTERVALS, 2);
    assert.equal(nodeHealth(n, 10_200).alive, true);
    assert.equal(nodeHealth(n, 10_201).alive, false);
    assert.equal(nodeHealth(n, 10_300, 3).alive, true);
    assert.equal(nodeHealth(n, 10_301, 3).alive, false);
    assert.equal(nodeHealth(n, 10_301).ageMs, 301);
  });

  it("names the services whose probes failed", () => {
    assert.deepEqual(
      nodeHealth(beat(false), 10_000).sick.map((s) => s.name),
      ["quote"],
    );
    assert.deepEqual(nodeHealth(beat(true), 10_000).sick, []);
  });
});
