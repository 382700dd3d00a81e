/** The generated messages encode and decode: what agents publish is what controllers read. */
import assert from "node:assert/strict";
import { it } from "node:test";
import { Heartbeat, PatchState, Role } from "../../proto/index.js";

it("a heartbeat survives protobuf encoding with its patches, probes and metrics", () => {
  const hb = Heartbeat.fromPartial({
    cluster: "c1",
    pair: "p1",
    node: "a",
    role: Role.ROLE_STANDBY,
    sequence: 42,
    timestampMs: Date.now(),
    intervalMs: 250,
    runId: "r-1",
    services: [
      { name: "svc", healthy: true, pid: 1234, startTime: 99, probes: [{ name: "tcp", ok: true, latencyMs: 2 }] },
    ],
    patches: [{ pid: 1234, patchId: "fix-1", state: PatchState.PATCH_STATE_ACTIVE }],
    load: { load1: 0.5, memoryUsed: 0.25 },
    metrics: { "web.errors_per_s": 0, "web.p99_ms": 3.5 },
    metricsReadAtMs: { web: 1_790_000_000_123 },
  });
  const bytes = Heartbeat.encode(hb).finish();
  assert.deepEqual(Heartbeat.decode(bytes), hb);
});
