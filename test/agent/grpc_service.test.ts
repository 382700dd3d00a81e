/**
 * The agent's gRPC service over real mTLS on loopback, against real fixture processes and a real
 * nats-server: who may call, what it lists, which bundles it refuses and with which status, and
 * what it writes to the audit log and the metrics endpoint.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFile, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import type { RunningAgent } from "../../agent/index.js";
import { readElf } from "../../native/index.js";
import { type AgentServiceClient, Outcome, Role, type WatchEventsResponse } from "../../proto/index.js";
import {
  agentClient,
  agentDoc,
  call,
  clientCredentials,
  type DevCerts,
  makeBundle,
  makeDevCerts,
  must,
  stage,
  startTestAgent,
  subscribed,
  tempDir,
  waitFor,
} from "../helpers/agent_harness.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

function grpcCode(err: unknown): number {
  return (err as ServiceError).code;
}

describe("agent gRPC service (mTLS)", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let certs: DevCerts;
  let agent: RunningAgent;
  let client: AgentServiceClient;
  let counter: string;
  let otherCounter: string;
  let patchSo: string;
  let fixture: RunningFixture;
  let otherFixture: RunningFixture;
  let sleeper: ChildProcess;
  const clients: AgentServiceClient[] = [];

  before(async () => {
    tmp = await tempDir("hotpatch-grpc-");
    nats = await startNatsServer();
    certs = await makeDevCerts(path.join(tmp.dir, "certs"), ["node-a"], ["operator"]);
    counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
    patchSo = await compileFixture("c/compute_patch.c", ["-O1", "-shared", "-fPIC"]);
    // A second copy of the same program at a path the agent may not patch.
    otherCounter = path.join(tmp.dir, "other-counter");
    await copyFile(counter, otherCounter);
    fixture = await startFixture(counter);
    otherFixture = await startFixture(otherCounter);
    sleeper = spawn("/bin/sleep", ["600"], { stdio: "ignore" });
    const server = must(certs.servers["node-a"], "server cert");
    agent = await startTestAgent(
      tmp.dir,
      agentDoc(tmp.dir, "node-a", nats.url, {
        grpc: { listen: "127.0.0.1:0", tls: { ca: certs.ca.cert, cert: server.cert, key: server.key } },
        allow: [counter],
      }),
    );
    const op = must(certs.clients.operator, "client cert");
    client = agentClient(agent.grpcPort, await clientCredentials(certs.ca.cert, op.cert, op.key));
    clients.push(client);
  });

  after(async () => {
    for (const c of clients) c.close();
    await agent?.stop();
    await fixture?.kill();
    await otherFixture?.kill();
    sleeper?.kill("SIGKILL");
    await nats?.close();
    await tmp?.cleanup();
  });

  describe("who may call", () => {
    it("refuses a TLS client without a certificate", async () => {
      const c = agentClient(agent.grpcPort, await clientCredentials(certs.ca.cert));
      clients.push(c);
      await assert.rejects(call(c, c.info, {}, 10_000), (e) => grpcCode(e) === status.UNAVAILABLE);
    });

    it("refuses a client whose certificate another CA signed", async () => {
      const rogue = await makeDevCerts(path.join(tmp.dir, "rogue"), [], ["operator"]);
      const c = agentClient(
        agent.grpcPort,
        await clientCredentials(
          certs.ca.cert,
          must(rogue.clients.operator, "rogue cert").cert,
          must(rogue.clients.operator, "rogue cert").key,
        ),
      );
      clients.push(c);
      await assert.rejects(call(c, c.info, {}, 10_000), (e) => grpcCode(e) === status.UNAVAILABLE);
    });

    it("refuses a plaintext client", async () => {
      const c = agentClient(agent.grpcPort);
      clients.push(c);
      await assert.rejects(call(c, c.info, {}, 10_000), (e) => grpcCode(e) === status.UNAVAILABLE);
    });

    it("answers a client with a certificate from its CA: Info names node, pair, cluster, role, version", async () => {
      const info = await call(client, client.info, {});
      assert.deepEqual(
        { ...info, hostname: "" },
        { node: "node-a", pair: "p1", cluster: "c1", role: Role.ROLE_STANDBY, version: "test", hostname: "" },
      );
    });
  });

  describe("ListProcesses", () => {
    it("finds the fixture by executable path, with its build-id, start time and cgroup from /proc", async () => {
      const { processes } = await call(client, client.listProcesses, {
        selector: { exePath: counter, buildId: "", pid: 0, cgroup: "", libraryPath: "" },
      });
      assert.deepEqual(
        processes.map((p) => p.pid),
        [fixture.pid],
      );
      const p = must(processes[0], "process");
      assert.equal(p.exePath, counter);
      assert.equal(p.buildId, (await readElf(counter)).buildId);
      const stat = await readFile(`/proc/${fixture.pid}/stat`, "utf8");
      assert.equal(p.startTime, Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]));
      const cg = (await readFile(`/proc/${fixture.pid}/cgroup`, "utf8")).split("\n").find((l) => l.startsWith("0::"));
      if (cg) assert.equal(p.cgroup, cg.slice(3));
    });

    it("finds both copies by build-id (same file content), and one by pid", async () => {
      const buildId = (await readElf(counter)).buildId ?? "";
      const byId = await call(client, client.listProcesses, {
        selector: { exePath: "", buildId, pid: 0, cgroup: "", libraryPath: "" },
      });
      assert.deepEqual(byId.processes.map((p) => p.pid).sort(), [fixture.pid, otherFixture.pid].sort());
      const byPid = await call(client, client.listProcesses, {
        selector: { exePath: "", buildId: "", pid: otherFixture.pid, cgroup: "", libraryPath: "" },
      });
      assert.deepEqual(
        byPid.processes.map((p) => p.exePath),
        [otherCounter],
      );
    });

    it("finds the fixture by a library it maps together with its cgroup", async () => {
      const maps = await readFile(`/proc/${fixture.pid}/maps`, "utf8");
      const libc =
        maps
          .split("\n")
          .map((l) => l.split(/\s+/)[5] ?? "")
          .find((p) => /libc[.-]/.test(p)) ?? "";
      const {
        processes: [me],
      } = await call(client, client.listProcesses, {
        selector: { exePath: "", buildId: "", pid: fixture.pid, cgroup: "", libraryPath: "" },
      });
      const { processes } = await call(client, client.listProcesses, {
        selector: { exePath: counter, buildId: "", pid: 0, cgroup: must(me, "fixture").cgroup, libraryPath: libc },
      });
      assert.deepEqual(
        processes.map((p) => p.pid),
        [fixture.pid],
      );
    });

    it("refuses an empty selector with INVALID_ARGUMENT (it must never mean every process)", async () => {
      await assert.rejects(
        call(client, client.listProcesses, { selector: undefined }),
        (e) => grpcCode(e) === status.INVALID_ARGUMENT && /empty process selector/.test((e as Error).message),
      );
    });

    it("refuses a relative executable path with INVALID_ARGUMENT", async () => {
      await assert.rejects(
        call(client, client.listProcesses, {
          selector: { exePath: "counter", buildId: "", pid: 0, cgroup: "", libraryPath: "" },
        }),
        (e) => grpcCode(e) === status.INVALID_ARGUMENT,
      );
    });
  });

  describe("StageBundle, Apply, Status", () => {
    let good: Buffer;
    before(async () => {
      good = await makeBundle(
        tmp.dir,
        "fix-1",
        { path: counter, buildId: (await readElf(counter)).buildId ?? "" },
        patchSo,
      );
    });

    it("refuses an upload whose sha256 differs from its header, and stores nothing", async () => {
      await assert.rejects(
        stage(client, "fix-1", good, { sha256: "0".repeat(64) }),
        (e) => grpcCode(e) === status.INVALID_ARGUMENT && /EBAD_BUNDLE/.test((e as Error).message),
      );
      const st = await call(client, client.status, {});
      assert.deepEqual(st.stagedBundles, []);
      assert.deepEqual(
        (await readdir(path.join(tmp.dir, "node-a-bundles"))).filter((n) => !n.startsWith(".")),
        [],
      );
    });

    it("refuses an upload larger than its header announced with RESOURCE_EXHAUSTED", async () => {
      await assert.rejects(
        stage(client, "fix-1", good, { size: 100 }),
        (e) => grpcCode(e) === status.RESOURCE_EXHAUSTED,
      );
    });

    it("an upload cut off by its deadline leaves nothing behind", async () => {
      const err = await new Promise<ServiceError | null>((resolve) => {
        // Long enough for the agent to have read the header (and so to name the bundle) on a busy machine.
        const s = client.stageBundle(new Metadata(), { deadline: Date.now() + 2000 }, (e) => resolve(e));
        s.write({
          part: { $case: "header", value: { bundleId: "fix-slow", size: good.length, sha256: "1".repeat(64) } },
        });
        s.write({ part: { $case: "chunk", value: good.subarray(0, 100) } });
        // never ends: the client stalls
      });
      assert.equal(err?.code, status.DEADLINE_EXCEEDED);
      await waitFor("the refusal in the audit log", async () =>
        (await readFile(path.join(tmp.dir, "node-a-audit.jsonl"), "utf8")).includes('"bundleId":"fix-slow"')
          ? true
          : undefined,
      );
      await waitFor("the upload to be cleaned up", async () =>
        (await readdir(path.join(tmp.dir, "node-a-bundles"))).length === 0 ? true : undefined,
      );
    });

    it("refuses a bundle for an executable that is not on the allow-list with PERMISSION_DENIED", async () => {
      const foreign = await makeBundle(tmp.dir, "fix-other", { path: otherCounter, buildId: "00ff00ff" }, patchSo);
      await assert.rejects(
        stage(client, "fix-other", foreign),
        (e) => grpcCode(e) === status.PERMISSION_DENIED && /allow-list/.test((e as Error).message),
      );
      assert.deepEqual((await call(client, client.status, {})).stagedBundles, []);
    });

    it("refuses Apply of a bundle that is not staged with FAILED_PRECONDITION", async () => {
      await assert.rejects(
        call(client, client.apply, {
          bundleId: "fix-1",
          selector: { exePath: counter, buildId: "", pid: 0, cgroup: "", libraryPath: "" },
          consistency: 0,
          safetyTimeoutMs: 0,
          requestedBy: "t",
          followNewProcesses: false,
        }),
        (e) => grpcCode(e) === status.FAILED_PRECONDITION && /not staged/.test((e as Error).message),
      );
    });

    it("stages a good bundle once; the same upload again is reported as already staged", async () => {
      assert.deepEqual(await stage(client, "fix-1", good), { bundleId: "fix-1", alreadyStaged: false });
      assert.deepEqual(await stage(client, "fix-1", good), { bundleId: "fix-1", alreadyStaged: true });
      assert.deepEqual((await call(client, client.status, {})).stagedBundles, ["fix-1"]);
    });

    it("refuses Apply with an empty selector with INVALID_ARGUMENT", async () => {
      await assert.rejects(
        call(client, client.apply, {
          bundleId: "fix-1",
          selector: undefined,
          consistency: 0,
          safetyTimeoutMs: 0,
          requestedBy: "t",
          followNewProcesses: false,
        }),
        (e) => grpcCode(e) === status.INVALID_ARGUMENT,
      );
    });

    it("skips a process whose executable has another build-id, and says why", async () => {
      const { results } = await call(client, client.apply, {
        bundleId: "fix-1",
        selector: { exePath: "", buildId: "", pid: sleeper.pid ?? 0, cgroup: "", libraryPath: "" },
        consistency: 0,
        safetyTimeoutMs: 0,
        requestedBy: "ci",
        followNewProcesses: false,
      });
      assert.deepEqual(
        results.map((r) => [r.pid, r.outcome, r.errorCode]),
        [[sleeper.pid, Outcome.OUTCOME_SKIPPED, "EBUILDID"]],
      );
    });

    it("refuses Apply to a pid that does not exist with NOT_FOUND", async () => {
      await assert.rejects(
        call(client, client.apply, {
          bundleId: "fix-1",
          selector: { exePath: "", buildId: "", pid: 4_000_000, cgroup: "", libraryPath: "" },
          consistency: 0,
          safetyTimeoutMs: 0,
          requestedBy: "ci",
          followNewProcesses: false,
        }),
        (e) => grpcCode(e) === status.NOT_FOUND && /no process 4000000/.test((e as Error).message),
      );
    });

    it("refuses Apply with PERMISSION_DENIED when a matching target file is not on the allow-list, touching nothing", async () => {
      // otherCounter is a byte-for-byte copy of counter (same build-id) at a path the agent may not patch.
      await assert.rejects(
        call(client, client.apply, {
          bundleId: "fix-1",
          selector: {
            exePath: "",
            buildId: (await readElf(counter)).buildId ?? "",
            pid: 0,
            cgroup: "",
            libraryPath: "",
          },
          consistency: 0,
          safetyTimeoutMs: 0,
          requestedBy: "ci",
          followNewProcesses: false,
        }),
        (e) =>
          grpcCode(e) === status.PERMISSION_DENIED &&
          (e as Error).message.includes(`${otherFixture.pid} (${otherCounter})`),
      );
      const { processes } = await call(client, client.listProcesses, {
        selector: { exePath: counter, buildId: "", pid: 0, cgroup: "", libraryPath: "" },
      });
      assert.deepEqual(
        processes.map((p) => p.patches),
        [[]],
        "the allowed process was not patched either",
      );
    });
  });

  describe("Switchover and WatchEvents", () => {
    it("a switchover changes the role, streams a role.changed event, and Info reports it", async () => {
      const stream = client.watchEvents({});
      const seen: WatchEventsResponse[] = [];
      stream.on("data", (d: WatchEventsResponse) => seen.push(d));
      stream.on("error", () => undefined);
      await subscribed(stream);
      const r = await call(client, client.switchover, { targetRole: Role.ROLE_ACTIVE, requestedBy: "drill" });
      assert.deepEqual(r, { previousRole: Role.ROLE_STANDBY, role: Role.ROLE_ACTIVE });
      const ev = await waitFor("role.changed event", () => seen.find((s) => s.event?.kind === "role.changed")?.event);
      assert.equal(ev.role, Role.ROLE_ACTIVE);
      assert.equal(ev.node, "node-a");
      assert.equal((await call(client, client.info, {})).role, Role.ROLE_ACTIVE);
      stream.cancel();
    });

    it("refuses a switchover to an unspecified role with INVALID_ARGUMENT", async () => {
      await assert.rejects(
        call(client, client.switchover, { targetRole: Role.ROLE_UNKNOWN, requestedBy: "x" }),
        (e) => grpcCode(e) === status.INVALID_ARGUMENT,
      );
    });
  });

  describe("audit log and metrics", () => {
    it("every change request is one JSON line naming the client certificate's CN, what was asked and the result", async () => {
      const lines = (await readFile(path.join(tmp.dir, "node-a-audit.jsonl"), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      const summary = lines.map((l) => `${l.action}:${l.result}`);
      for (const want of [
        "apply:ENOT_ALLOWED",
        "stage:EBAD_BUNDLE",
        "stage:ETOO_LARGE",
        "stage:ENOT_ALLOWED",
        "apply:ENOT_STAGED",
        "stage:ok",
        "apply:EBAD_ARGUMENT",
        "switchover:ok",
      ]) {
        assert.ok(summary.includes(want), `no audit line ${want} in ${summary.join(", ")}`);
      }
      assert.ok(lines.every((l) => l.actor === "operator" && typeof l.time === "string"));
      const skipped = lines.find((l) => l.action === "apply" && l.result === "ok");
      assert.deepEqual(skipped.processes, [{ pid: sleeper.pid, outcome: "skipped", errorCode: "EBUILDID" }]);
      assert.equal(skipped.requestedBy, "ci");
    });

    it("the metrics endpoint serves patch, failure and role counters", async () => {
      const text = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
      assert.match(text, /hotpatch_patch_operations_total\{op="apply",outcome="skipped"\} 1/);
      assert.match(text, /hotpatch_failures_total\{op="stage",code="EBAD_BUNDLE"\} 1/);
      assert.match(text, /hotpatch_role_active 1/);
      assert.match(text, /hotpatch_heartbeats_total\{result="published"\} \d+/);
    });
  });
});
