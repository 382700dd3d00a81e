/**
 * The agent and its disk, on real tmpfs mounts the test makes (one for bundles, one for the audit
 * log) and a real gRPC agent: an upload that fills the disk or meets a read-only one fails with a
 * stable code and leaves nothing behind, and the agent keeps serving; uploads are capped in total
 * bytes and in number at once; DeleteBundle refuses a bundle in use and frees the space; the audit
 * log never keeps half a record, reports a full disk in the reply, Status and metrics without
 * failing the finished work, and writes the queued records once space returns.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, open, readdir, readFile, rm, stat, truncate } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import type { RunningAgent } from "../../agent/index.js";
import { readElf } from "../../native/index.js";
import { type AgentServiceClient, Consistency, Role } from "../../proto/index.js";
import {
  agentClient,
  agentDoc,
  call,
  makeBundle,
  stage,
  startTestAgent,
  tempDir,
  waitFor,
} from "../helpers/agent_harness.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const run = promisify(execFile);

async function mountTmpfs(dir: string, size: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await run("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir]);
}

/** Fills the file system holding `file` until it refuses one more byte. */
async function fill(file: string): Promise<void> {
  const h = await open(file, "a");
  try {
    for (const size of [64 * 1024, 4096, 1]) {
      const buf = Buffer.alloc(size, 0x55);
      for (;;) {
        try {
          await h.write(buf);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw err;
        }
      }
    }
  } finally {
    await h.close();
  }
}

function refusedWith(grpc: status, code: string) {
  return (e: unknown) => (e as ServiceError).code === grpc && (e as Error).message.includes(`[${code}]`);
}

const anyPid = { exePath: "", buildId: "", pid: 0, cgroup: "", libraryPath: "" };

describe("the agent and its disk (tmpfs)", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let agent: RunningAgent;
  let client: AgentServiceClient;
  let storeMount: string;
  let auditMount: string;
  let bundleDir: string;
  let auditFile: string;
  let counter: string;
  let patchSo: string;
  let fixture: RunningFixture;
  let archiveBytes: number;
  const bundles = new Map<string, Buffer>();
  const bundle = async (id: string) => {
    let b = bundles.get(id);
    if (!b) {
      b = await makeBundle(tmp.dir, id, { path: counter, buildId: (await readElf(counter)).buildId ?? "" }, patchSo);
      bundles.set(id, b);
    }
    return b;
  };
  const uploadsLeft = async () => (await readdir(bundleDir)).filter((n) => n.startsWith(".upload-"));

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error("this test mounts tmpfs file systems and must run as root");
    tmp = await tempDir("hotpatch-disk-");
    storeMount = path.join(tmp.dir, "store");
    auditMount = path.join(tmp.dir, "audit");
    await mountTmpfs(storeMount, "2m");
    await mountTmpfs(auditMount, "64k");
    bundleDir = path.join(storeMount, "bundles");
    auditFile = path.join(auditMount, "audit.jsonl");
    nats = await startNatsServer();
    counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
    patchSo = await compileFixture("c/compute_patch.c", ["-O1", "-shared", "-fPIC"]);
    fixture = await startFixture(counter);
    archiveBytes = (await bundle("probe")).length;
    agent = await startTestAgent(
      tmp.dir,
      agentDoc(tmp.dir, "node-d", nats.url, {
        grpc: { listen: "127.0.0.1:0", insecure: true, maxBundleBytes: 2 * archiveBytes },
        allow: [counter],
        bundleDir,
        auditLog: auditFile,
        // Two stored bundles fit, a third upload does not.
        uploads: { quotaBytes: Math.floor(2.5 * archiveBytes), maxConcurrent: 2 },
        audit: { fsync: "always" },
      }),
    );
    client = agentClient(agent.grpcPort);
  });

  after(async () => {
    client?.close();
    await agent?.stop();
    await fixture?.kill();
    await nats?.close();
    for (const m of [storeMount, auditMount]) if (m) await run("umount", [m]).catch(() => run("umount", ["-l", m]));
    await tmp?.cleanup();
  });

  it("ends an upload that fills the disk with ENOSPACE, leaves no partial upload, and keeps serving", async () => {
    const filler = path.join(storeMount, "filler");
    await fill(filler);
    // Room for less than half of the upload: the write fails while the stream waits to write more.
    await truncate(filler, (await stat(filler)).size - Math.floor(archiveBytes / 2));
    await assert.rejects(
      stage(client, "full-1", await bundle("full-1")),
      refusedWith(status.RESOURCE_EXHAUSTED, "ENOSPACE"),
    );
    assert.deepEqual(await uploadsLeft(), []);
    assert.equal((await call(client, client.info, {})).node, "node-d");
    await rm(filler);
    assert.equal((await stage(client, "full-1", await bundle("full-1"))).alreadyStaged, false);
  });

  it("ends an upload on a disk that refuses writes with EIO naming the errno, and keeps serving", async () => {
    await run("mount", ["-o", "remount,ro", storeMount]);
    try {
      await assert.rejects(
        stage(client, "ro-1", await bundle("ro-1")),
        (e: unknown) => refusedWith(status.INTERNAL, "EIO")(e) && (e as Error).message.includes("EROFS"),
      );
    } finally {
      await run("mount", ["-o", "remount,rw", storeMount]);
    }
    assert.deepEqual(await uploadsLeft(), []);
    assert.equal((await call(client, client.info, {})).node, "node-d");
  });

  it("refuses an upload past the quota with EQUOTA, and DeleteBundle frees its space", async () => {
    await stage(client, "q-2", await bundle("q-2"));
    await assert.rejects(stage(client, "q-3", await bundle("q-3")), refusedWith(status.RESOURCE_EXHAUSTED, "EQUOTA"));
    const del = await call(client, client.deleteBundle, { bundleId: "q-2", requestedBy: "test" });
    assert.ok(del.freedBytes > 0 && del.auditError === "", JSON.stringify(del));
    assert.equal((await stage(client, "q-3", await bundle("q-3"))).alreadyStaged, false);
    assert.deepEqual((await call(client, client.status, {})).stagedBundles, ["full-1", "q-3"]);
  });

  it("refuses a third upload at once while two are in progress (ETOO_MANY_UPLOADS)", async () => {
    await call(client, client.deleteBundle, { bundleId: "q-3", requestedBy: "test" });
    const archive = await bundle("c-1");
    const open2 = [0, 1].map(() => {
      const s = client.stageBundle(new Metadata(), { deadline: Date.now() + 60_000 }, () => undefined);
      s.write({ part: { $case: "header", value: { bundleId: "c-1", size: 200, sha256: "a".repeat(64) } } });
      s.write({ part: { $case: "chunk", value: archive.subarray(0, 100) } });
      return s;
    });
    await waitFor("two uploads in progress", async () => ((await uploadsLeft()).length === 2 ? true : undefined));
    await assert.rejects(stage(client, "c-1", archive), refusedWith(status.RESOURCE_EXHAUSTED, "ETOO_MANY_UPLOADS"));
    for (const s of open2) s.cancel();
    await waitFor("the cancelled uploads removed", async () => ((await uploadsLeft()).length === 0 ? true : undefined));
  });

  it("DeleteBundle refuses a bundle with a follow rule or present in a process, audits each answer", async () => {
    await stage(client, "del-1", await bundle("del-1"));
    const applied = await call(client, client.apply, {
      bundleId: "del-1",
      selector: { ...anyPid, pid: fixture.pid },
      consistency: Consistency.CONSISTENCY_ENTRY,
      safetyTimeoutMs: 0,
      requestedBy: "test",
      followNewProcesses: true,
    });
    assert.equal(applied.results[0]?.errorCode, "", JSON.stringify(applied));
    const del = () => call(client, client.deleteBundle, { bundleId: "del-1", requestedBy: "test" });
    await assert.rejects(
      del(),
      (e: unknown) =>
        refusedWith(status.FAILED_PRECONDITION, "EBUNDLE_IN_USE")(e) && /follow rule/.test((e as Error).message),
    );
    const revert = (unload: boolean) =>
      call(client, client.revert, {
        bundleId: "del-1",
        selector: { ...anyPid, pid: fixture.pid },
        unload,
        requestedBy: "test",
      });
    await revert(false);
    await assert.rejects(
      del(),
      (e: unknown) =>
        refusedWith(status.FAILED_PRECONDITION, "EBUNDLE_IN_USE")(e) &&
        (e as Error).message.includes(String(fixture.pid)),
    );
    await revert(true);
    await del();
    assert.deepEqual(
      (await readdir(bundleDir)).filter((n) => n === "del-1"),
      [],
    );
    const deletes = (await readFile(auditFile, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((r) => r.action === "delete" && r.request.bundleId === "del-1")
      .map((r) => r.result);
    assert.deepEqual(deletes, ["EBUNDLE_IN_USE", "EBUNDLE_IN_USE", "ok"]);
  });

  it("never keeps half an audit record; a full disk is reported, not a failure, and the queue is written once space returns", async () => {
    const filler = path.join(auditMount, "filler");
    await fill(filler);
    // A record longer than a page: what is left of the log's last page takes a part of it (a short write).
    const by = `full-disk-${"x".repeat(6000)}`;
    const r = await call(client, client.switchover, { targetRole: Role.ROLE_ACTIVE, requestedBy: by });
    assert.equal(r.role, Role.ROLE_ACTIVE);
    assert.match(r.auditError, /^\[ENOSPACE\] /);
    const lines = (await readFile(auditFile, "utf8")).split("\n");
    assert.equal(lines.pop(), "", "the log ends with a complete line");
    for (const l of lines) JSON.parse(l);
    assert.ok(!lines.some((l) => l.includes("full-disk")));
    const st = (await call(client, client.status, {})).audit;
    assert.ok(st && st.pending >= 1 && /ENOSPACE/.test(st.error), JSON.stringify(st));
    const page = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    assert.match(page, /^hotpatch_audit_write_failures_total\{code="ENOSPACE"\} [1-9]/m);
    assert.match(page, /^hotpatch_audit_pending_records [1-9]/m);

    await rm(filler);
    await waitFor("the queued audit records written", async () => {
      const a = (await call(client, client.status, {})).audit;
      return a && a.pending === 0 && a.error === "" ? true : undefined;
    });
    const after = (await readFile(auditFile, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const sw = after.filter((rec) => rec.requestedBy === by);
    assert.equal(sw.length, 1);
    assert.equal(sw[0].result, "ok");
    const again = await call(client, client.switchover, { targetRole: Role.ROLE_STANDBY, requestedBy: "space-back" });
    assert.equal(again.auditError, "");
  });
});
