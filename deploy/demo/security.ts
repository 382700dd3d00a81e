/**
 * The demo's credentials when it runs hardened (the default): one dev CA for everything, a
 * server-only certificate per agent and for NATS, a client-only certificate for the controller
 * (role controller on every agent), and an nkey per NATS identity with the least-privilege
 * permissions of deploy/nats: each node its own subjects, the controller its cluster's rollout
 * state. The lab mode (`hotpatch demo --lab`) uses none of it.
 */
import path from "node:path";
import { makeNatsCredentials } from "../nats/credentials.js";
import type { NatsIdentity } from "../nats/permissions.js";
import { type CertFiles, makeClientCert, makeDevCa, makeServerCert } from "../tls/dev_ca.js";

/** The name of the demo's controller: its client certificate's CN and its NATS identity. */
export const DEMO_CONTROLLER = "demo-controller";

/** Everything the hardened demo hands to its agents, its NATS server and its hotpatch commands. */
export interface DemoSecurity {
  /** The CA that signed every certificate (PEM file). */
  ca: string;
  /** The gRPC server certificate of each node. */
  servers: Record<string, CertFiles>;
  /** The controller's client certificate. */
  controller: CertFiles;
  /** The `nats:` section of each node, by node name. */
  nodeNats: Record<string, Record<string, unknown>>;
  /** The controller's `nats:` section, and the file holding it (for --nats-config). */
  controllerNats: Record<string, unknown>;
  controllerNatsFile: string;
  /** The NATS server's configuration file. */
  natsServerConfig: string;
}

/** Makes the demo's PKI and NATS credentials in `dir` for `nodes` of `cluster`, the server on 127.0.0.1:`natsPort`. */
export async function makeDemoSecurity(
  dir: string,
  cluster: string,
  nodes: { pair: string; node: string }[],
  natsPort: number,
): Promise<DemoSecurity> {
  const pki = path.join(dir, "pki");
  const ca = await makeDevCa(pki, "hotpatch demo CA");
  const servers: Record<string, CertFiles> = {};
  for (const n of nodes) servers[n.node] = await makeServerCert(pki, ca, n.node);
  const controller = await makeClientCert(pki, ca, DEMO_CONTROLLER);
  const natsTls = await makeServerCert(pki, ca, "nats");
  const identities: NatsIdentity[] = [
    ...nodes.map((n): NatsIdentity => ({ kind: "node", name: n.node, cluster, ...n, leaseBucket: "hotpatch_roles" })),
    { kind: "controller", name: DEMO_CONTROLLER, cluster },
  ];
  const made = await makeNatsCredentials(path.join(dir, "nats-auth"), identities, {
    listen: `127.0.0.1:${natsPort}`,
    storeDir: path.join(dir, "nats"),
    tls: { cert: natsTls.cert, key: natsTls.key, ca: ca.cert },
    clientUrls: [`tls://127.0.0.1:${natsPort}`],
  });
  const user = (name: string) => {
    const u = made.users[name];
    if (!u) throw new Error(`no NATS credentials for ${name}`);
    return u;
  };
  return {
    ca: ca.cert,
    servers,
    controller,
    nodeNats: Object.fromEntries(nodes.map((n) => [n.node, user(n.node).section])),
    controllerNats: user(DEMO_CONTROLLER).section,
    controllerNatsFile: user(DEMO_CONTROLLER).clientConfig,
    natsServerConfig: made.serverConfig,
  };
}
