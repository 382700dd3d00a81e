/** The three-node NATS cluster config: rendered on free ports, the nodes form a JetStream cluster. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const script = path.join(root, "deploy/nats/cluster.sh");

/** Nine distinct free loopback ports (held open together so none repeats, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = createServer();
    await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
    servers.push(s);
    const a = s.address();
    if (a && typeof a === "object") ports.push(a.port);
  }
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return (await res.json()) as Record<string, unknown>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("three-node NATS cluster config", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let client: number[];
  let http: number[];
  const pids: number[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "hotpatch-nats-cluster-"));
    const ports = await freePorts(9);
    client = ports.slice(0, 3);
    http = ports.slice(6, 9);
    env = {
      ...process.env,
      NATS_CLIENT_PORTS: client.join(" "),
      NATS_CLUSTER_PORTS: ports.slice(3, 6).join(" "),
      NATS_HTTP_PORTS: http.join(" "),
    };
  });
  after(async () => {
    await execFileAsync(script, ["stop", dir], { env }).catch(() => undefined);
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  it("renders one config per node with the given ports and all three routes", async () => {
    await execFileAsync(script, ["render", dir], { env });
    const n2 = await readFile(path.join(dir, "n2.conf"), "utf8");
    assert.match(n2, new RegExp(`listen: 127\\.0\\.0\\.1:${client[1]}`));
    assert.match(n2, new RegExp(`http: 127\\.0\\.0\\.1:${http[1]}`));
    assert.equal((n2.match(/nats-route:\/\/127\.0\.0\.1:\d+/g) ?? []).length, 3);
    assert.doesNotMatch(n2, /@[A-Z_0-9]+@/, "every placeholder is filled in");
  });

  it("refuses a port list that is not three port numbers", async () => {
    const bad = await execFileAsync(script, ["render", dir], { env: { ...env, NATS_HTTP_PORTS: "1 2" } }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal((bad as { code: number }).code, 1);
    assert.match((bad as { stderr: string }).stderr, /need three http ports/);
  });

  it("starts three nodes that elect one JetStream meta leader and replicate a KV bucket, then stops them", async () => {
    const { stdout } = await execFileAsync(script, ["start", dir], { env });
    assert.equal(stdout.trim(), client.map((p) => `nats://127.0.0.1:${p}`).join(","));
    for (const n of ["n1", "n2", "n3"]) pids.push(Number(readFileSync(path.join(dir, `${n}.pid`), "utf8")));

    // Polled until the cluster has formed (a busy machine may take a while), then judged.
    const deadline = Date.now() + 60_000;
    let leaders: unknown[] = [];
    let routes: unknown[] = [];
    const monitor = (path: string) =>
      Promise.all(http.map((p) => getJson(`http://127.0.0.1:${p}/${path}`).catch((): Record<string, unknown> => ({}))));
    while (Date.now() < deadline) {
      const jsz = await monitor("jsz");
      leaders = jsz.map((j) => (j.meta_cluster as { leader?: string; cluster_size?: number } | undefined)?.leader);
      const sizes = jsz.map((j) => (j.meta_cluster as { cluster_size?: number } | undefined)?.cluster_size);
      routes = (await monitor("routez")).map((r) => r.num_routes);
      if (
        leaders[0] &&
        leaders.every((l) => l === leaders[0]) &&
        sizes.every((s) => s === 3) &&
        routes.every((n) => n === 2)
      )
        break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(["n1", "n2", "n3"].includes(String(leaders[0])), `meta leaders seen: ${JSON.stringify(leaders)}`);
    assert.ok(
      leaders.every((l) => l === leaders[0]),
      `all nodes agree on the leader: ${JSON.stringify(leaders)}`,
    );
    assert.deepEqual(routes, [2, 2, 2]);

    // A bucket with three replicas written through n1 is read back through n3.
    const nc1 = await connect({ servers: `127.0.0.1:${client[0]}`, timeout: 5000 });
    const nc3 = await connect({ servers: `127.0.0.1:${client[2]}`, timeout: 5000 });
    try {
      // JetStream requests get a generous deadline: placing three replicas is slow on a busy machine.
      const kv1 = await new Kvm(jetstream(nc1, { timeout: 20_000 })).create("deploy_test", { replicas: 3 });
      await kv1.put("greeting", "hello");
      const kv3 = await new Kvm(jetstream(nc3, { timeout: 20_000 })).open("deploy_test");
      const entry = await kv3.get("greeting");
      assert.equal(entry?.string(), "hello");
    } finally {
      await nc1.close();
      await nc3.close();
    }

    const status = await execFileAsync(script, ["status", dir], { env });
    assert.equal(status.stdout.trim().split("\n").length, 3);
    assert.match(status.stdout, /n1 pid \d+ client .* meta-leader n[123]/);

    await execFileAsync(script, ["stop", dir], { env });
    for (const pid of pids) assert.equal(alive(pid), false, `node ${pid} stopped`);
  });
});
