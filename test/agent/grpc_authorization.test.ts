/**
 * gRPC authorisation on a real agent with real mTLS certificates: roles come from the client
 * certificate's CN through `grpc.roles`, deny by default; a viewer only reads; a node's (server)
 * certificate is no client certificate; every refusal is a line in the audit log.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { type ServiceError, status } from "@grpc/grpc-js";
import type { RunningAgent } from "../../agent/index.js";
import { type AgentServiceClient, ApplyRequest, RevertRequest, Role } from "../../proto/index.js";
import {
  agentClient,
  agentDoc,
  call,
  clientCredentials,
  type DevCerts,
  makeDevCerts,
  must,
  stage,
  startTestAgent,
  subscribed,
  tempDir,
  waitFor,
} from "../helpers/agent_harness.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

const run = promisify(execFile);
const grpcCode = (e: unknown) => (e as ServiceError).code;
const emptySelector = { exePath: "", buildId: "", pid: 0, cgroup: "", libraryPath: "" };

/** A certificate from the dev CA with the given extended key usage line (or none), as an older or careless PKI makes. */
async function certWithUsage(certs: DevCerts, dir: string, name: string, usage: string | null) {
  const [key, csr, crt, ext] = ["key", "csr", "crt", "ext"].map((e) => path.join(dir, `${name}.${e}`)) as [
    string,
    string,
    string,
    string,
  ];
  await run(
    "openssl",
    ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
      "-keyout",
      key,
      "-out",
      csr,
      "-subj",
      `/CN=${name}`,
    ]),
  );
  await writeFile(ext, `basicConstraints=CA:FALSE\n${usage ? `extendedKeyUsage=${usage}\n` : ""}`);
  await run(
    "openssl",
    ["x509", "-req", "-in", csr, "-CA", certs.ca.cert, "-CAkey", certs.ca.key].concat([
      "-CAcreateserial",
      "-out",
      crt,
      "-days",
      "2",
      "-extfile",
      ext,
    ]),
  );
  return { cert: crt, key };
}

describe("gRPC authorisation by client certificate role", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let certs: DevCerts;
  let agent: RunningAgent;
  let auditFile: string;
  const clients: Record<string, AgentServiceClient> = {};

  const clientAs = async (name: string, files?: { cert: string; key: string }) => {
    const f = files ?? must(certs.clients[name] ?? certs.servers[name], `cert ${name}`);
    const c = agentClient(agent.grpcPort, await clientCredentials(certs.ca.cert, f.cert, f.key));
    clients[`${name}-${Object.keys(clients).length}`] = c;
    return c;
  };
  const auditLines = async () =>
    (await readFile(auditFile, "utf8"))
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { actor: string; action: string; result: string; message?: string });
  /** Waits for the refusal of `action` by `actor` in the audit log. */
  const refusalAudited = (actor: string, action: string, message: RegExp) =>
    waitFor(`audit line refusing ${action} by ${actor}`, async () => {
      const hit = (await auditLines()).find(
        (l) => l.actor === actor && l.action === action && l.result === "EUNAUTHORIZED",
      );
      if (hit) assert.match(hit.message ?? "", message);
      return hit;
    });
  const denied = (e: unknown) => {
    assert.equal(grpcCode(e), status.PERMISSION_DENIED, String(e));
    assert.match((e as ServiceError).details, /\[EUNAUTHORIZED\]/);
    return true;
  };

  before(async () => {
    tmp = await tempDir("hotpatch-grpc-authz-");
    nats = await startNatsServer();
    certs = await makeDevCerts(
      path.join(tmp.dir, "certs"),
      ["node-a", "node-b"],
      ["alice", "ci", "grafana", "mallory"],
    );
    const server = must(certs.servers["node-a"], "server cert");
    const doc = agentDoc(tmp.dir, "node-a", nats.url, {
      grpc: {
        listen: "127.0.0.1:0",
        tls: { ca: certs.ca.cert, cert: server.cert, key: server.key },
        // node-b is named as an operator: its certificate is still refused, being a server's.
        roles: { operator: ["alice", "node-b", "legacy-node"], controller: ["ci"], viewer: ["grafana", "no-usage"] },
      },
      metrics: undefined,
    });
    auditFile = String(doc.auditLog);
    agent = await startTestAgent(tmp.dir, doc);
  });

  after(async () => {
    for (const c of Object.values(clients)) c.close();
    await agent?.stop();
    await nats?.close();
    await tmp?.cleanup();
  });

  it("a viewer may read: info, process list, status and events", async () => {
    const c = await clientAs("grafana");
    assert.equal((await call(c, c.info, {})).node, "node-a");
    await call(c, c.listProcesses, { selector: { ...emptySelector, pid: process.pid } });
    await call(c, c.status, {});
    const stream = c.watchEvents({});
    stream.on("error", () => undefined);
    await subscribed(stream);
    stream.cancel();
  });

  it("a viewer may change nothing: stage, apply, revert, switchover and delete are refused and audited", async () => {
    const c = await clientAs("grafana");
    await assert.rejects(call(c, c.apply, ApplyRequest.fromPartial({ bundleId: "b", selector: { pid: 1 } })), denied);
    await refusalAudited("grafana", "apply", /grafana is a viewer; apply needs one of the roles operator, controller/);
    await assert.rejects(call(c, c.revert, RevertRequest.fromPartial({ bundleId: "b", selector: { pid: 1 } })), denied);
    await refusalAudited("grafana", "revert", /viewer/);
    await assert.rejects(call(c, c.switchover, { targetRole: Role.ROLE_ACTIVE, requestedBy: "t" }), denied);
    await refusalAudited("grafana", "switchover", /viewer/);
    await assert.rejects(stage(c, "b", Buffer.from("not a bundle")), denied);
    await refusalAudited("grafana", "stageBundle", /viewer/);
    await assert.rejects(call(c, c.deleteBundle, { bundleId: "b", requestedBy: "t" }), denied);
    await refusalAudited("grafana", "deleteBundle", /viewer/);
  });

  it("operator and controller may switch over (and read)", async () => {
    for (const name of ["alice", "ci"]) {
      const c = await clientAs(name);
      const r = await call(c, c.switchover, { targetRole: Role.ROLE_STANDBY, requestedBy: name });
      assert.equal(r.role, Role.ROLE_STANDBY);
      await call(c, c.status, {});
    }
    const lines = await auditLines();
    assert.ok(lines.some((l) => l.actor === "ci" && l.action === "switchover" && l.result === "ok"));
  });

  it("a certificate of the agents' CA that no role names may call nothing, not even info (deny by default)", async () => {
    const c = await clientAs("mallory");
    await assert.rejects(call(c, c.info, {}), denied);
    await refusalAudited("mallory", "info", /mallory holds no role on this agent/);
    const stream = c.watchEvents({});
    const err = await new Promise<unknown>((resolve) => stream.once("error", resolve));
    denied(err);
    await refusalAudited("mallory", "watchEvents", /holds no role/);
  });

  it("a node's server-only certificate fails the TLS handshake as a client", async () => {
    const c = await clientAs("node-b");
    await assert.rejects(call(c, c.info, {}), (e) => grpcCode(e) === status.UNAVAILABLE);
  });

  it("a certificate that says serverAuth (an old node certificate, also clientAuth) is refused though its CN holds a role, and audited", async () => {
    const legacy = await certWithUsage(certs, tmp.dir, "legacy-node", "serverAuth,clientAuth");
    const c = await clientAs("legacy-node", legacy);
    await assert.rejects(call(c, c.switchover, { targetRole: Role.ROLE_ACTIVE, requestedBy: "peer" }), denied);
    await refusalAudited("legacy-node", "switchover", /is a server certificate .*not a client certificate/);
  });

  it("a certificate without clientAuth usage is refused though its CN holds a role, and audited", async () => {
    const bare = await certWithUsage(certs, tmp.dir, "no-usage", null);
    const c = await clientAs("no-usage", bare);
    await assert.rejects(call(c, c.info, {}), denied);
    await refusalAudited("no-usage", "info", /does not say extendedKeyUsage clientAuth/);
  });

  it("refusals leave the agent answering its rightful callers", async () => {
    const c = await clientAs("alice");
    assert.equal((await call(c, c.info, {})).node, "node-a");
  });
});
