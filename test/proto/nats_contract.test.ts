/** The NATS contract spells each subject and key one way, and reads back the node a heartbeat subject names. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  clusterHeartbeatSubjects,
  eventSubject,
  heartbeatSubject,
  pairHeartbeatSubjects,
  pairLeaseKey,
  parseHeartbeatSubject,
  rolloutBucket,
  rolloutControlKey,
  rolloutKey,
  rolloutPairKey,
} from "../../proto/index.js";

const n = { cluster: "c1", pair: "p1", node: "a" };

describe("NATS contract", () => {
  it("names subjects, buckets and keys as agents and controllers have always spelled them", () => {
    assert.equal(heartbeatSubject(n), "hotpatch.hb.c1.p1.a");
    assert.equal(eventSubject(n), "hotpatch.ev.c1.p1.a");
    assert.equal(pairHeartbeatSubjects("c1", "p1"), "hotpatch.hb.c1.p1.*");
    assert.equal(clusterHeartbeatSubjects("c1"), "hotpatch.hb.c1.>");
    assert.equal(pairLeaseKey(n), "lease.c1.p1");
    assert.equal(rolloutBucket("c1"), "hotpatch-rollout-c1");
    assert.equal(rolloutKey("r1"), "rollout.r1");
    assert.equal(rolloutPairKey("r1", "p1"), "rollout.r1.pair.p1");
    assert.equal(rolloutControlKey("r1"), "rollout.r1.control");
  });

  it("reads the node back from a heartbeat subject and refuses anything else", () => {
    assert.deepEqual(parseHeartbeatSubject(heartbeatSubject(n)), n);
    for (const s of ["hotpatch.hb.c1.p1", "hotpatch.hb.c1.p1.a.b", "hotpatch.ev.c1.p1.a", "other.hb.c1.p1.a"])
      assert.equal(parseHeartbeatSubject(s), null, s);
  });
});
