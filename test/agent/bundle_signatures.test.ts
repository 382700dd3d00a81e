/** An agent that trusts signing keys stages only bundles signed by one of them; others get PERMISSION_DENIED. */
import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type ServiceError, status } from "@grpc/grpc-js";
import type { RunningAgent } from "../../agent/index.js";
import { generateKeyPair } from "../../bundle/index.js";
import { readElf } from "../../native/index.js";
import type { AgentServiceClient } from "../../proto/index.js";
import { agentClient, agentDoc, makeBundle, stage, startTestAgent, tempDir } from "../helpers/agent_harness.js";
import { compileFixture } from "../helpers/fixtures.js";
import { type NatsServer, startNatsServer } from "../helpers/nats_server.js";

describe("bundle signatures", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let nats: NatsServer;
  let agent: RunningAgent;
  let client: AgentServiceClient;
  let counter: string;
  let patchSo: string;
  let trusted: Awaited<ReturnType<typeof generateKeyPair>>;
  let buildId: string;

  before(async () => {
    tmp = await tempDir("hotpatch-sig-");
    nats = await startNatsServer();
    counter = await compileFixture("c/counter.c", ["-O1", "-g"]);
    patchSo = await compileFixture("c/compute_patch.c", ["-O1", "-shared", "-fPIC"]);
    buildId = (await readElf(counter)).buildId ?? "";
    trusted = await generateKeyPair();
    const keyFile = path.join(tmp.dir, "trusted.pub");
    await writeFile(keyFile, trusted.publicKey);
    agent = await startTestAgent(
      tmp.dir,
      agentDoc(tmp.dir, "node-a", nats.url, { allow: [counter], trustedKeys: [keyFile], metrics: undefined }),
    );
    client = agentClient(agent.grpcPort);
  });

  after(async () => {
    client?.close();
    await agent?.stop();
    await nats?.close();
    await tmp?.cleanup();
  });

  const denied = (code: string) => (e: unknown) =>
    (e as ServiceError).code === status.PERMISSION_DENIED && (e as Error).message.includes(`[${code}]`);

  it("refuses an unsigned bundle", async () => {
    const archive = await makeBundle(tmp.dir, "fix-unsigned", { path: counter, buildId }, patchSo);
    await assert.rejects(stage(client, "fix-unsigned", archive), denied("EBUNDLE_UNSIGNED"));
  });

  it("refuses a bundle signed by a key the agent does not trust", async () => {
    const stranger = await generateKeyPair();
    const archive = await makeBundle(
      tmp.dir,
      "fix-foreign",
      { path: counter, buildId },
      patchSo,
      undefined,
      stranger.privateKey,
    );
    await assert.rejects(stage(client, "fix-foreign", archive), denied("EBUNDLE_SIGNATURE"));
  });

  it("stages a bundle signed by a trusted key; the refused ones left nothing behind", async () => {
    const archive = await makeBundle(
      tmp.dir,
      "fix-signed",
      { path: counter, buildId },
      patchSo,
      undefined,
      trusted.privateKey,
    );
    assert.deepEqual(await stage(client, "fix-signed", archive), {
      bundleId: "fix-signed",
      alreadyStaged: false,
      auditError: "",
    });
    assert.deepEqual(await readdir(path.join(tmp.dir, "node-a-bundles")), ["fix-signed"]);
  });
});
