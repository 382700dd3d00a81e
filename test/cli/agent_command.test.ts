/** `hotpatch agent --config FILE` as an operator runs it: certificates from the dev TLS helper's CLI, a real nats-server, SIGTERM to stop. */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { agentClient, call, clientCredentials, tempDir } from "../helpers/agent_harness.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(root, "bin/hotpatch.js");
const run = promisify(execFile);

describe("hotpatch agent", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;

  before(async () => {
    tmp = await tempDir("hotpatch-cli-agent-");
    nats = await startNatsServer();
  });
  after(async () => {
    await nats?.close();
    await tmp?.cleanup();
  });

  it("a config with bad fields exits with 2 and names each field", async () => {
    const file = path.join(tmp.dir, "bad.yaml");
    await writeFile(
      file,
      stringify({ node: "a.b", pair: "p", cluster: "c", grpc: { listen: "nowhere" }, nats: { servers: [] } }),
    );
    const r = await run("node", [bin, "agent", "--config", file]).then(
      () => ({ code: 0, stderr: "" }),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(r.code, 2);
    assert.match(r.stderr, /\[ECONFIG\]/);
    for (const field of ["node", "grpc.listen", "grpc.tls", "nats.servers", "bundleDir", "auditLog", "allow", "role"]) {
      assert.match(r.stderr, new RegExp(`^  ${field.replace(".", "\\.")}: `, "m"), `no line for ${field}`);
    }
  });

  it("runs with certificates from deploy/tls/dev_ca.ts, answers an mTLS client, and stops on SIGTERM", async () => {
    const certs = path.join(tmp.dir, "certs");
    await run(path.join(root, "node_modules/.bin/tsx"), [
      path.join(root, "deploy/tls/dev_ca.ts"),
      "--dir",
      certs,
      "--node",
      "node-a",
      "--client",
      "operator",
    ]);
    const file = path.join(tmp.dir, "agent.yaml");
    await writeFile(
      file,
      stringify({
        node: "node-a",
        pair: "p1",
        cluster: "lab",
        grpc: { listen: "127.0.0.1:0", tls: { ca: "certs/ca.crt", cert: "certs/node-a.crt", key: "certs/node-a.key" } },
        nats: { servers: [nats.url] },
        role: { source: "static", role: "active" },
        allow: ["/usr/sbin/"],
        bundleDir: "bundles",
        auditLog: "audit.jsonl",
      }),
    );
    const child = spawn("node", [bin, "agent", "--config", file, "--json"], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      const started = await new Promise<{ grpcPort: number }>((resolve, reject) => {
        let out = "";
        let err = "";
        child.stderr.on("data", (d: Buffer) => {
          err += d.toString();
        });
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const line = out.split("\n").find((l) => l.includes('"started"'));
          if (line) resolve(JSON.parse(line).started);
        });
        child.once("exit", (code) => reject(new Error(`agent exited with ${code}: ${err}`)));
      });
      const client = agentClient(
        started.grpcPort,
        await clientCredentials(
          path.join(certs, "ca.crt"),
          path.join(certs, "operator.crt"),
          path.join(certs, "operator.key"),
        ),
      );
      const info = await call(client, client.info, {});
      client.close();
      assert.deepEqual([info.node, info.pair, info.cluster], ["node-a", "p1", "lab"]);
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      child.kill("SIGTERM");
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});
