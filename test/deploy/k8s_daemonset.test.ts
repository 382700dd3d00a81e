/** The Kubernetes DaemonSet of the agent: it parses, and it has what the agent needs on a node. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

// A loose view of the manifests: only the fields the checks read.
interface Container {
  args: string[];
  env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  securityContext: { capabilities: { add: string[]; drop: string[] }; allowPrivilegeEscalation: boolean };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec?: {
    template: {
      spec: {
        hostPID: boolean;
        hostNetwork: boolean;
        containers: Container[];
        volumes: { name: string; hostPath?: { path: string }; configMap?: { name: string } }[];
      };
    };
  };
}

function load(): Manifest[] {
  const docs = parseAllDocuments(readFileSync(path.join(root, "deploy/k8s/daemonset.yaml"), "utf8"));
  for (const d of docs) assert.deepEqual(d.errors, [], "every document parses");
  return docs.map((d) => d.toJS() as Manifest);
}

describe("Kubernetes DaemonSet", () => {
  const manifests = load();
  const ds = manifests.find((m) => m.kind === "DaemonSet");
  const pod = ds?.spec?.template.spec;
  const agent = pod?.containers[0];

  it("parses into a Namespace, a ConfigMap and a DaemonSet", () => {
    assert.deepEqual(manifests.map((m) => m.kind).sort(), ["ConfigMap", "DaemonSet", "Namespace"]);
  });

  it("runs in the host's PID and network namespaces with SYS_PTRACE and no other privilege", () => {
    assert.ok(pod && agent);
    assert.equal(pod.hostPID, true);
    assert.equal(pod.hostNetwork, true);
    assert.deepEqual(agent.securityContext.capabilities.drop, ["ALL"]);
    assert.ok(agent.securityContext.capabilities.add.includes("SYS_PTRACE"));
    assert.deepEqual([...agent.securityContext.capabilities.add].sort(), [
      "DAC_READ_SEARCH",
      "NET_ADMIN",
      "SYS_PTRACE",
    ]);
    assert.equal(agent.securityContext.allowPrivilegeEscalation, false);
  });

  it("mounts the host's /proc, and the bundle store at the same path as on the host", () => {
    assert.ok(pod && agent);
    const hostPathOf = (volume: string) => pod.volumes.find((v) => v.name === volume)?.hostPath?.path;
    const mount = (mountPath: string) => agent.volumeMounts.find((m) => m.mountPath === mountPath);
    const proc = mount("/host/proc");
    assert.ok(proc && hostPathOf(proc.name) === "/proc" && proc.readOnly === true);
    const store = mount("/var/lib/hotpatch");
    assert.ok(store && hostPathOf(store.name) === "/var/lib/hotpatch");
  });

  it("probes the agent on its metrics port", () => {
    assert.ok(agent);
    const metrics = agent.ports.find((p) => p.name === "metrics");
    assert.ok(metrics);
    assert.equal(agent.livenessProbe.httpGet.port, "metrics");
    assert.equal(agent.readinessProbe.httpGet.port, "metrics");
    assert.equal(agent.livenessProbe.httpGet.path, "/metrics");
  });

  it("gives each node its own config file from the ConfigMap, listening where the probes look", () => {
    assert.ok(pod && agent);
    assert.deepEqual(agent.args, ["agent", "--config", "/etc/hotpatch/nodes/$(NODE_NAME).yaml"]);
    assert.equal(agent.env.find((e) => e.name === "NODE_NAME")?.valueFrom?.fieldRef?.fieldPath, "spec.nodeName");
    const cm = manifests.find((m) => m.kind === "ConfigMap");
    const configVolume = pod.volumes.find((v) => v.configMap?.name === cm?.metadata.name);
    assert.ok(configVolume, "the ConfigMap is mounted");
    assert.equal(agent.volumeMounts.find((m) => m.name === configVolume.name)?.mountPath, "/etc/hotpatch/nodes");
    const metricsPort = agent.ports.find((p) => p.name === "metrics")?.containerPort;
    const pairs = new Map<string, number>();
    for (const [file, text] of Object.entries(cm?.data ?? {})) {
      const config = parse(text) as { node: string; pair: string; metrics: { listen: string } };
      assert.equal(`${config.node}.yaml`, file, "file named after its node");
      assert.equal(config.metrics.listen, `0.0.0.0:${metricsPort}`);
      pairs.set(config.pair, (pairs.get(config.pair) ?? 0) + 1);
    }
    for (const [pair, nodes] of pairs) assert.equal(nodes, 2, `pair ${pair} has two nodes`);
  });
});
