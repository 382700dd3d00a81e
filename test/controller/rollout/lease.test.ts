/** The per-cluster rollout lease in JetStream KV on a real nats-server 2.9 (no per-key TTL). */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Lease, RolloutError, RolloutStore } from "../../../controller/rollout/index.js";
import { waitFor } from "../../helpers/agent_harness.js";
import { hotpatch } from "../../helpers/cli.js";
import { type NatsServer, startNatsServer } from "../../helpers/nats_server.js";

describe("rollout lease", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    dir = await mkdtemp(path.join(tmpdir(), "hotpatch-lease-"));
  });
  after(async () => {
    await nc?.close();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("a second controller is refused while the lease is held, with the holder named", async () => {
    const store = await RolloutStore.open(nc, "held");
    const first = await Lease.acquire(store.kv, { ttlMs: 5000, rolloutId: "r-one" });
    try {
      await assert.rejects(
        Lease.acquire(store.kv, { ttlMs: 5000, rolloutId: "r-two" }),
        (err: unknown) =>
          err instanceof RolloutError &&
          err.code === "ELEASE_HELD" &&
          /held by .* pid \d+ \(rollout r-one\) until/.test(err.message),
      );
    } finally {
      await first.release();
    }
    const next = await Lease.acquire(store.kv, { ttlMs: 5000, rolloutId: "r-two" });
    await next.release();
  });

  it("the holder renews the lease, so it outlives its ttl", async () => {
    const store = await RolloutStore.open(nc, "renew");
    const lease = await Lease.acquire(store.kv, { ttlMs: 300, rolloutId: "r-renew" });
    const firstExpiry = lease.value.expiresAtMs;
    try {
      // Renewals (every ttl/3) push the stored expiry on; wait until it is two ttls past the first.
      // (Watching the stored value, not the clock: on a busy machine a KV round trip can take longer
      // than this ttl, and the lease may then lapse between renewals, which is not what is shown here.)
      await waitFor("the lease to be renewed past two ttls", async () =>
        ((await Lease.read(store.kv, () => 0))?.expiresAtMs ?? 0) > firstExpiry + 600 ? true : undefined,
      );
      assert.ok(lease.held);
      assert.equal((await Lease.read(store.kv, () => 0))?.rolloutId, "r-renew");
      // A controller asking when the lease would have expired without renewals is refused.
      await assert.rejects(
        Lease.acquire(store.kv, { ttlMs: 300, rolloutId: "r-other", now: () => firstExpiry + 1 }),
        /ELEASE_HELD|held by/,
      );
    } finally {
      await lease.release();
    }
  });

  it("an expired lease (holder crashed) is taken over, and the old holder learns it lost it", async () => {
    const store = await RolloutStore.open(nc, "expire");
    // A clock that stands still makes the first holder stop renewing in time, like a frozen process.
    let frozen = Date.now();
    const crashed = await Lease.acquire(store.kv, { ttlMs: 200, rolloutId: "r-crashed", now: () => frozen });
    let lost: RolloutError | null = null;
    crashed.whenLost((e) => {
      lost = e;
    });
    frozen -= 10_000; // its renewals now write an expiry in the past
    await waitFor("a renewal with the frozen clock", async () =>
      ((await Lease.read(store.kv))?.expiresAtMs ?? 0) < Date.now() - 5000 ? true : undefined,
    );
    // The stuck holder still writes its (past) expiry every ttl/3: a renewal landing between the
    // successor's read and its compare-and-swap makes that attempt fail, so it tries again (the
    // lease stays expired, so a refusal that lasts is a real failure).
    const successor = await waitFor("the successor to take the expired lease", () =>
      Lease.acquire(store.kv, { ttlMs: 5000, rolloutId: "r-next" }).catch((err: unknown) => {
        if (err instanceof RolloutError && err.code === "ELEASE_HELD") return undefined;
        throw err;
      }),
    );
    try {
      // Its next renewal finds the successor's revision.
      await waitFor("the old holder to learn it lost the lease", () => (lost ? true : undefined));
      assert.equal((lost as RolloutError | null)?.code, "ELEASE_LOST");
      assert.equal(crashed.held, false);
      assert.equal((await Lease.read(store.kv))?.rolloutId, "r-next");
    } finally {
      await successor.release();
      await crashed.release();
    }
  });

  it("a lease whose holder was killed on this host is taken over at once, not after its ttl", async () => {
    const dist = new URL("../../../dist/controller/rollout/index.js", import.meta.url).href;
    const code = `
      import { connect } from "@nats-io/transport-node";
      import { Lease, RolloutStore } from ${JSON.stringify(dist)};
      const nc = await connect({ servers: ${JSON.stringify(nats.url)} });
      const store = await RolloutStore.open(nc, "killed");
      await Lease.acquire(store.kv, { ttlMs: 600000, rolloutId: "r-killed" });
      process.stdout.write("held\\n");
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout?.on("data", (d: Buffer) => d.toString().includes("held") && resolve());
        child.once("exit", (c) => reject(new Error(`lease holder exited with ${c}`)));
      });
      const store = await RolloutStore.open(nc, "killed");
      await assert.rejects(Lease.acquire(store.kv, { ttlMs: 5000, rolloutId: "r-new" }), /ELEASE_HELD|held by/);
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
      const lease = await Lease.acquire(store.kv, { ttlMs: 5000, rolloutId: "r-new" });
      await lease.release();
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("`hotpatch rollout --plan` exits 3 and names the holder while another controller holds the lease", async () => {
    const store = await RolloutStore.open(nc, "busy");
    const lease = await Lease.acquire(store.kv, { ttlMs: 30_000, rolloutId: "r-other" });
    try {
      await writeFile(path.join(dir, "manifest.json"), JSON.stringify({ id: "fix-1" }));
      await writeFile(path.join(dir, "patch.so"), "not really a library");
      const plan = path.join(dir, "plan.yaml");
      await writeFile(
        plan,
        `cluster: busy\nnats: {servers: ["${nats.url}"]}\nbundle: .\ntarget: {exePath: /bin/true}\nagents: {insecure: true}\n`,
      );
      const r = await hotpatch(["rollout", "--plan", plan]);
      assert.equal(r.code, 3, `exit ${r.code}: ${r.stderr}`);
      assert.match(
        r.stderr,
        /\[ELEASE_HELD\]: cluster rollout lease is held by .*rollout r-other.*rollout abort r-other --cluster busy/,
      );
      const j = await hotpatch(["rollout", "--plan", plan, "--json"]);
      assert.equal(j.code, 3);
      assert.equal((JSON.parse(j.stderr) as { error: { code: string } }).error.code, "ELEASE_HELD");
    } finally {
      await lease.release();
    }
  });
});
