/**
 * The hotpatch-state descriptor lives in the target's memory, and any process of the target's user
 * can forge one. A seeded fuzzer throws random and mutated descriptors (mutations of a real one,
 * counts pushed past their arrays) at ps, apply, revert and the agent's recovery: never a crash,
 * never a byte that was not in the forged descriptor, a clear error with a stable code, and on
 * every error the target exactly as it was and still answering.
 */
import assert from "node:assert/strict";
import { open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { applyPatch, EngineError, listPatches, revertPatch } from "../../native/index.js";
import { agentClient, call, startCliAgent, tempDir } from "../helpers/agent_harness.js";
import { hotpatch } from "../helpers/cli.js";
import { compileFixture, type RunningFixture, startFixture } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

// The engine's layout (native/src/engine/descriptor.h): a 24-byte header, then 6712-byte records.
const headerSize = 24;
const recordSize = 6712;
const descriptorSize = Math.ceil((headerSize + 32 * recordSize) / 4096) * 4096;
const counts = [12, headerSize + 68, headerSize + 352]; // patch_count, function_count, mapping_count
// EMEMORY: a forged record that points at memory the target does not have.
const codes = new Set(["EBAD_DESCRIPTOR", "ENOPATCH", "EPATCH_EXISTS", "ECODE_CHANGED", "EPATCH_ACTIVE", "EMEMORY"]);

/** A small seeded generator (mulberry32), so a failure names a case that can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Case `n`: a real descriptor mutated, its counts pushed past their arrays, or random bytes behind a valid header. */
function forge(n: number, genuine: Buffer): Buffer {
  const r = rng(0x5eed + n);
  const int = (k: number) => Math.floor(r() * k);
  const buf = Buffer.from(genuine);
  switch (n % 3) {
    case 0:
      for (let i = 1 + int(8); i > 0; i--) buf[int(headerSize + recordSize)] = int(256);
      break;
    case 1:
      buf.writeUInt32LE([0, 1, 31, 32, 33, 40, 0x7fffffff, 0xffffffff][int(8)] ?? 40, counts[int(3)] ?? 12);
      break;
    default:
      for (let i = headerSize; i < headerSize + recordSize * 2; i++) buf[i] = int(256);
      buf.writeUInt32LE(int(34), 12);
  }
  return buf;
}

describe("forged hotpatch-state descriptors", () => {
  let binary: string;
  let patch: string;
  let genuine: Buffer;
  let target: RunningFixture;
  let state: number;

  async function startTarget(size = descriptorSize): Promise<void> {
    await target?.kill();
    target = await startFixture(binary, [String(size)]);
    if (size === 0) return;
    await target.nextLine(/^answer /); // printed after the state line
    state = Number.parseInt(/^state ([0-9a-f]+)$/m.exec(target.output())?.[1] ?? "0", 16);
  }

  async function poke(bytes: Buffer): Promise<void> {
    const mem = await open(`/proc/${target.pid}/mem`, "r+");
    try {
      await mem.write(bytes, 0, bytes.length, state);
    } finally {
      await mem.close();
    }
  }

  async function snapshot(): Promise<{ maps: string; state: Buffer }> {
    const mem = await open(`/proc/${target.pid}/mem`, "r");
    try {
      const buf = Buffer.alloc(descriptorSize);
      await mem.read(buf, 0, descriptorSize, state);
      return { maps: await readFile(`/proc/${target.pid}/maps`, "utf8"), state: buf };
    } finally {
      await mem.close();
    }
  }

  async function untouched(before: { maps: string; state: Buffer }, what: string): Promise<void> {
    const now = await snapshot();
    assert.equal(now.maps, before.maps, `${what}: the maps changed`);
    assert.ok(now.state.equals(before.state), `${what}: the descriptor changed`);
  }

  before(async () => {
    binary = await compileFixture("c/forged_state_target.c", ["-O2", "-g", "-fPIE", "-pie"]);
    patch = await compileFixture("c/compute_patch.c", ["-O2", "-shared", "-fPIC"]);
    // A real descriptor, written by the engine into another process of the same program.
    const donor = await startFixture(binary, ["0"]);
    try {
      await applyPatch(donor.pid, {
        id: "real",
        soPath: patch,
        functions: [{ symbol: "compute", replacement: "compute_fixed" }],
      });
      const maps = await readFile(`/proc/${donor.pid}/maps`, "utf8");
      const line = maps.split("\n").find((l) => l.includes("/memfd:hotpatch-state"));
      assert.ok(line, maps);
      const at = Number.parseInt(line.split("-")[0] ?? "0", 16);
      const mem = await open(`/proc/${donor.pid}/mem`, "r");
      genuine = Buffer.alloc(descriptorSize);
      await mem.read(genuine, 0, descriptorSize, at);
      await mem.close();
    } finally {
      await donor.kill();
    }
    await startTarget();
  });
  after(async () => {
    await target?.kill();
  });

  const fn = [{ symbol: "compute", replacement: "compute_fixed" }];
  const ops: [string, () => Promise<unknown>][] = [
    ["ps", () => listPatches(target.pid)],
    ["apply", () => applyPatch(target.pid, { id: "real", soPath: patch, functions: fn })],
    ["revert", () => revertPatch(target.pid, "real", { unload: true })],
  ];

  it("ps, apply and revert on 240 forged descriptors: a stable error code or a true answer, and on every error the target untouched", async (t) => {
    const outcomes = new Map<string, number>();
    for (let n = 0; n < 240; n++) {
      const forged = forge(n, genuine);
      await poke(forged);
      for (const [name, op] of ops) {
        const before = await snapshot();
        let outcome: string;
        try {
          const r = await op();
          outcome = "ok";
          if (name === "ps") {
            // Every string came from the forged bytes: nothing of the engine's own memory.
            for (const rec of r as Awaited<ReturnType<typeof listPatches>>) {
              for (const s of [rec.id, rec.soPath, ...rec.functions.map((f) => f.symbol)]) {
                // Bytes that are no UTF-8 come back as U+FFFD; every other piece is the forged bytes.
                for (const piece of s.split("\uFFFD")) {
                  assert.ok(
                    forged.includes(Buffer.from(piece, "utf8")),
                    `case ${n}: ${JSON.stringify(s)} is not in the forged bytes`,
                  );
                }
              }
            }
          } else if ((r as { changed?: boolean }).changed) {
            await startTarget(); // it really changed the target (a forgery that is a valid descriptor)
            await poke(forged);
          } else {
            await untouched(before, `case ${n} ${name} (a no-op)`);
          }
        } catch (err) {
          assert.ok(err instanceof EngineError, `case ${n} ${name}: ${String(err)}`);
          assert.ok(codes.has(err.code), `case ${n} ${name}: ${err.code} ${err.message}`);
          outcome = err.code;
          await untouched(before, `case ${n} ${name}`);
        }
        outcomes.set(`${name} ${outcome}`, (outcomes.get(`${name} ${outcome}`) ?? 0) + 1);
      }
      if (n % 20 === 0)
        assert.equal(await target.nextLine(/^answer /), "answer 4", `case ${n}: still answering from its own code`);
    }
    assert.ok(target.alive());
    t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    assert.ok((outcomes.get("ps EBAD_DESCRIPTOR") ?? 0) > 100, JSON.stringify([...outcomes]));
  });

  it("a hotpatch-state mapping smaller than a descriptor is refused by every operation", async () => {
    await startTarget(4096);
    await poke(genuine.subarray(0, 4096));
    for (const [name, op] of ops) {
      await assert.rejects(op(), (err: unknown) => err instanceof EngineError && err.code === "EBAD_DESCRIPTOR", name);
    }
    await startTarget();
  });

  it("hotpatch ps --pid exits with a clear error, never a crash", async () => {
    for (const n of [1, 4, 7]) {
      await poke(forge(n, genuine));
      const r = await hotpatch(["ps", "--pid", String(target.pid), "--json"]);
      assert.ok(r.code === 0 || /EBAD_DESCRIPTOR/.test(r.stdout + r.stderr), `case ${n}: ${r.code} ${r.stderr}`);
      assert.ok(r.code < 128, `case ${n}: killed by a signal (${r.code})`);
    }
  });

  describe("an agent starting while an allow-listed process carries a forged descriptor", () => {
    let tmp: Awaited<ReturnType<typeof tempDir>>;
    let nats: NatsServer;
    before(async () => {
      tmp = await tempDir("hotpatch-forged-");
      nats = await startNatsServer();
    });
    after(async () => {
      await nats?.close();
      await tmp?.cleanup();
    });

    it("recovers, and reports the process with no patch it cannot believe", async () => {
      const configFile = path.join(tmp.dir, "agent.yaml");
      await writeFile(
        configFile,
        stringify({
          node: "node-a",
          pair: "p1",
          cluster: "c1",
          grpc: { listen: "127.0.0.1:0", insecure: true },
          nats: { servers: [nats.url] },
          heartbeat: { intervalMs: 100 },
          role: { source: "static", role: "standby" },
          allow: [binary],
          bundleDir: "bundles",
          auditLog: "audit.jsonl",
          metrics: { listen: "127.0.0.1:0" },
          logLevel: "warn",
        }),
      );
      for (const n of [1, 4]) {
        await poke(forge(n, genuine)); // function_count or mapping_count past its array, random records
        const agent = await startCliAgent(configFile);
        const client = agentClient(agent.grpcPort);
        try {
          const { processes } = await call(client, client.listProcesses, {
            selector: { exePath: "", buildId: "", pid: target.pid, cgroup: "", libraryPath: "" },
          });
          assert.equal(processes.length, 1);
          assert.ok(agent.child.exitCode === null, "the agent is still running");
        } finally {
          client.close();
          await agent.kill("SIGTERM");
        }
      }
      assert.ok(target.alive());
    });
  });
});
