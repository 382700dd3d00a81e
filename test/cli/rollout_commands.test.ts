/** `hotpatch rollout status|resume|pause|abort|list` on a real NATS server: options and errors. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hotpatch, jsonLines } from "../helpers/cli.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

describe("rollout subcommands", () => {
  let nats: NatsServer;
  before(async () => {
    nats = await startNatsServer();
  });
  after(async () => {
    await nats?.close();
  });

  for (const cmd of ["status", "resume", "pause", "abort"]) {
    it(`${cmd} of an unknown rollout exits 2 with EROLLOUT_NOT_FOUND (as JSON with --json)`, async () => {
      const r = await hotpatch(["rollout", cmd, "r-nope", "--cluster", "c1", "--nats", nats.url, "--json"]);
      assert.equal(r.code, 2, r.stderr);
      const err = JSON.parse(r.stderr) as { error: { code: string; message: string } };
      assert.equal(err.error.code, "EROLLOUT_NOT_FOUND");
      assert.match(err.error.message, /no rollout r-nope in cluster c1/);
    });
  }

  it("list of a cluster without rollouts prints nothing and exits 0", async () => {
    const r = await hotpatch(["rollout", "list", "--cluster", "c1", "--nats", nats.url, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(jsonLines(r.stdout), []);
  });

  it("a subcommand without --cluster is a usage error", async () => {
    const r = await hotpatch(["rollout", "status", "r-x", "--nats", nats.url]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--cluster/);
  });

  it("an unreachable NATS server exits 1 with ENATS_CONNECT", async () => {
    const r = await hotpatch(["rollout", "status", "r-x", "--cluster", "c1", "--nats", "nats://127.0.0.1:1"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[ENATS_CONNECT\]/);
  });
});
