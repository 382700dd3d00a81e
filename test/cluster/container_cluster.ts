/**
 * The cluster on real containers (testcontainers, Ryuk off, images built locally): a three-node
 * NATS cluster with JetStream on one Docker network, and two 1+1 pairs, each node a container of
 * its own holding the agent (in the container's own PID and network namespaces) and the demo
 * quote service. The controller and the clients run on this host and reach the containers at
 * their addresses on the Docker bridge. Security is one switch (`agents.insecure` in plans, the
 * agents' `grpc.insecure`) until NATS authentication and gRPC authorisation land.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { StartedNetwork, StartedTestContainer } from "testcontainers";
import { parse, stringify } from "yaml";
import { parseConfig } from "../../agent/index.js";
import { buildDemoService } from "../../deploy/demo/index.js";
import { rolloutBucket } from "../../proto/index.js";
import { agentImage, natsImage, nodeImage } from "./images.js";

// Ryuk is an image from a registry; every container here is removed by `stop()` instead.
process.env.TESTCONTAINERS_RYUK_DISABLED = "true";
const tc = await import("testcontainers");

/** Where the quote service's forwarder listens in each node container. */
export const SERVICE_PORT = 7101;
/** The agent's gRPC port in each node container. */
export const GRPC_PORT = 7000;
/** The service binary inside the node image (the rollout's target and the agents' allow-list). */
export const SERVICE_BIN = "/opt/node/quote_service";
/** The NATS servers' names (and network aliases). */
const NATS_NAMES = ["nats-1", "nats-2", "nats-3"];
/** Heartbeat interval of every agent, ms. */
export const HEARTBEAT_MS = 100;

/** One node container. */
export interface NodeContainer {
  pair: string;
  node: string;
  /** Role it was started in. */
  role: "active" | "standby";
  container: StartedTestContainer;
  /** Its address on the cluster network (re-read after a restart). */
  ip: string;
  /** gRPC address for plans. */
  grpc(): string;
  /** The agent's audit records, read inside the container. */
  audit(): Promise<AuditRecord[]>;
}

/** One record of an agent's audit log. */
export interface AuditRecord {
  time: string;
  action: string;
  result: string;
  request?: { bundleId?: string };
  processes?: { pid: number; outcome: string }[];
}

export interface ContainerCluster {
  network: StartedNetwork;
  nats: StartedTestContainer[];
  /** client URLs of the three NATS servers, by container address. */
  natsUrls: string[];
  nodes: NodeContainer[];
  node(name: string): NodeContainer;
  /** A NATS connection from the host to the cluster (all three servers). */
  nc: NatsConnection;
  /** The quote service binary the images carry (bundles are built for its build-id). */
  serviceBinary: string;
  /** A folder on the host for plans, bundles and logs. */
  dir: string;
  /** Starts a node container again after a kill (a new agent run, a new service). */
  restartNode(name: string): Promise<void>;
  /** Faults, through the Docker engine: `docker kill`, `pause`/`unpause`, `network disconnect`/`connect`. */
  kill(c: StartedTestContainer): Promise<void>;
  pause(name: string): Promise<void>;
  unpause(name: string): Promise<void>;
  disconnect(name: string): Promise<void>;
  reconnect(name: string): Promise<void>;
  stop(): Promise<void>;
}

async function ipOf(c: StartedTestContainer, network: StartedNetwork): Promise<string> {
  return c.getIpAddress(network.getName());
}

function agentConfig(o: { cluster: string; pair: string; node: string; role: string; natsUrls: string[] }): string {
  const signal = (sig: string) => ["/bin/sh", "-c", `read p </tmp/service.pid && kill -${sig} "$p"`];
  return stringify({
    node: o.node,
    pair: o.pair,
    cluster: o.cluster,
    grpc: { listen: `0.0.0.0:${GRPC_PORT}`, insecure: true },
    nats: { servers: o.natsUrls },
    heartbeat: { intervalMs: HEARTBEAT_MS },
    role: { source: "static", role: o.role, hooks: { promote: signal("USR1"), demote: signal("USR2") } },
    services: [
      {
        name: "quote",
        process: { exePath: SERVICE_BIN },
        probes: [{ name: "port", tcp: { host: "127.0.0.1", port: 7100 }, timeoutMs: 1000 }],
      },
    ],
    allow: [SERVICE_BIN],
    bundleDir: "/tmp/bundles",
    auditLog: "/tmp/audit.jsonl",
    logLevel: "info",
  });
}

/**
 * Why the agents in the node containers would refuse their configuration, or null. Since gRPC
 * authorisation landed, plaintext gRPC is refused off loopback; until the suite's nodes get
 * certificates (server certificates with the node addresses as IP SANs, `grpc.roles`, plans'
 * `agents.tls`, the drill's `--tls-*`), the suite says so instead of starting a cluster that
 * cannot come up.
 */
export function nodeConfigProblem(): string | null {
  try {
    parseConfig(
      parse(agentConfig({ cluster: "c", pair: "p", node: "n", role: "standby", natsUrls: ["nats://n:4222"] })),
    );
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Reads a file inside a container (the images have no cat: node reads it). */
export async function readInContainer(c: StartedTestContainer, file: string): Promise<string> {
  const r = await c.exec([
    "/usr/local/bin/node",
    "-e",
    `try{process.stdout.write(require("fs").readFileSync(${JSON.stringify(file)},"utf8"))}catch{}`,
  ]);
  return r.output;
}

async function startNats(image: string, network: StartedNetwork, name: string): Promise<StartedTestContainer> {
  // Routes by network alias (Docker's DNS); each server skips the route to itself.
  const routes = NATS_NAMES.map((n) => `nats://${n}:6222`).join(",");
  const args = ["-js", "-sd", "/data", "-p", "4222", "--server_name", name, "--cluster_name", "hotpatch"];
  args.push("--cluster", "nats://0.0.0.0:6222", "--routes", routes);
  return new tc.GenericContainer(image)
    .withNetwork(network)
    .withNetworkAliases(name)
    .withName(`${name}-${process.pid}-${Date.now()}`)
    .withCommand(args)
    .withWaitStrategy(tc.Wait.forLogMessage(/Server is ready/))
    .withStartupTimeout(60_000)
    .start();
}

/** Creates the cluster's KV buckets with three replicas before any agent or controller opens them. */
async function replicatedBuckets(nc: NatsConnection, cluster: string): Promise<void> {
  const kvm = new Kvm(nc);
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      // Until JetStream has a meta leader, creating a stream fails; retried within the deadline.
      await kvm.create(rolloutBucket(cluster), { history: 5, replicas: 3 });
      return;
    } catch (err) {
      if (Date.now() > end) throw new Error(`JetStream R3 bucket not created within 60 s: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function startNode(
  image: string,
  network: StartedNetwork,
  o: { cluster: string; pair: string; node: string; role: "active" | "standby"; natsUrls: string[] },
): Promise<StartedTestContainer> {
  return (
    new tc.GenericContainer(image)
      .withNetwork(network)
      .withNetworkAliases(o.node)
      .withName(`${o.node}-${process.pid}-${Date.now()}`)
      .withEnvironment({ ROLE: o.role })
      .withAddedCapabilities("SYS_PTRACE")
      // A node stands for a host, whose processes run under no seccomp filter of Docker's (under
      // one, the agent refuses them with ESECCOMP unless it may read the filter: CAP_SYS_ADMIN).
      .withSecurityOpt("seccomp=unconfined")
      .withCopyContentToContainer([{ content: agentConfig(o), target: "/etc/hotpatch/agent.yaml" }])
      .withWaitStrategy(tc.Wait.forLogMessage(/"started":\{"grpcPort"/))
      .withStartupTimeout(90_000)
      .start()
  );
}

export const PAIRS = [
  { pair: "p1", node: "p1-a", role: "active" },
  { pair: "p1", node: "p1-b", role: "standby" },
  { pair: "p2", node: "p2-a", role: "standby" },
  { pair: "p2", node: "p2-b", role: "active" },
] as const;

/** Builds (or reuses) the images and starts the whole cluster. */
export async function startContainerCluster(cluster: string): Promise<ContainerCluster> {
  const dir = await mkdtemp(path.join(tmpdir(), "hotpatch-containers-"));
  const serviceBinary = await buildDemoService(path.join(dir, "quote_service"));
  const [natsTag, nodeTag] = await Promise.all([natsImage(), agentImage().then((a) => nodeImage(a, serviceBinary))]);
  const network = await new tc.Network().start();
  const docker = await tc.getContainerRuntimeClient();
  const dockerNetwork = docker.network.getById(network.getId());
  // Read from the engine now: testcontainers keeps the address a container had when it started.
  const currentIp = async (x: StartedTestContainer) =>
    (await docker.container.inspect(docker.container.getById(x.getId()))).NetworkSettings.Networks[network.getName()]
      ?.IPAddress ?? "";
  const started: StartedTestContainer[] = [];
  try {
    const nats = await Promise.all(NATS_NAMES.map((n) => startNats(natsTag, network, n)));
    started.push(...nats);
    const natsUrls = await Promise.all(nats.map(async (c) => `nats://${await ipOf(c, network)}:4222`));
    const nc = await connect({ servers: natsUrls, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    await replicatedBuckets(nc, cluster);
    const nodes: NodeContainer[] = [];
    const makeNode = async (p: (typeof PAIRS)[number]): Promise<NodeContainer> => {
      const container = await startNode(nodeTag, network, { cluster, ...p, natsUrls });
      started.push(container);
      const n: NodeContainer = {
        ...p,
        container,
        ip: await ipOf(container, network),
        grpc: () => `${n.ip}:${GRPC_PORT}`,
        async audit() {
          return (await readInContainer(n.container, "/tmp/audit.jsonl"))
            .split("\n")
            .filter((l) => l.trim().startsWith("{"))
            .map((l) => JSON.parse(l) as AuditRecord);
        },
      };
      return n;
    };
    for (const p of PAIRS) nodes.push(await makeNode(p));
    const c: ContainerCluster = {
      network,
      nats,
      natsUrls,
      nodes,
      nc,
      serviceBinary,
      dir,
      node: (name) => {
        const n = nodes.find((x) => x.node === name);
        if (!n) throw new Error(`no node ${name}`);
        return n;
      },
      async restartNode(name) {
        const n = c.node(name);
        await n.container.restart({ timeout: 0 });
        n.ip = await currentIp(n.container);
      },
      kill: (x) => docker.container.getById(x.getId()).kill({ signal: "SIGKILL" }),
      pause: (name) => docker.container.getById(c.node(name).container.getId()).pause(),
      unpause: (name) => docker.container.getById(c.node(name).container.getId()).unpause(),
      disconnect: (name) => dockerNetwork.disconnect({ Container: c.node(name).container.getId(), Force: true }),
      async reconnect(name) {
        const n = c.node(name);
        await dockerNetwork.connect({ Container: n.container.getId(), EndpointConfig: { Aliases: [name] } });
        n.ip = await currentIp(n.container);
      },
      async stop() {
        await nc.close().catch(() => undefined);
        await Promise.all(started.map((s) => s.stop({ timeout: 0 }).catch(() => undefined)));
        await network.stop().catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      },
    };
    return c;
  } catch (err) {
    await Promise.all(started.map((s) => s.stop({ timeout: 0 }).catch(() => undefined)));
    await network.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
