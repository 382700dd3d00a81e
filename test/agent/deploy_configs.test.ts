/** The agent configurations shipped in deploy/ (systemd example, Kubernetes ConfigMap) pass the agent's own validation. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import { parseConfig } from "../../agent/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

it("deploy/systemd/agent.example.yaml is a valid agent configuration", async () => {
  const text = await readFile(path.join(root, "deploy/systemd/agent.example.yaml"), "utf8");
  const c = parseConfig(parse(text), "agent.example.yaml", "/etc/hotpatch");
  assert.equal(c.grpc.security.kind, "mtls");
});

it("every node configuration in the Kubernetes DaemonSet's ConfigMap is valid", async () => {
  const docs = parseAllDocuments(await readFile(path.join(root, "deploy/k8s/daemonset.yaml"), "utf8")).map((d) =>
    d.toJS(),
  );
  const data = docs.find((d) => d?.kind === "ConfigMap")?.data as Record<string, string> | undefined;
  assert.ok(data && Object.keys(data).length > 0, "the DaemonSet file has a ConfigMap with node configurations");
  for (const [name, text] of Object.entries(data)) parseConfig(parse(text), name, "/etc/hotpatch");
});
