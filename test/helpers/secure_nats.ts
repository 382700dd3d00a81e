/**
 * The hardened NATS server as deploy/ ships it, for tests: a dev CA and the server's TLS
 * certificate, one nkey per identity with the permissions of deploy/nats/permissions.ts, the
 * lease bucket made by the admin identity (agents may not create streams), and a client config
 * (`nats:` section) per identity.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { FieldReader } from "../../common/index.js";
import { type NatsClientConfig, natsConnectOptions, readNatsClient } from "../../common/nats_client.js";
import { makeNatsCredentials, type NatsCredentials, provisionLeaseBucket } from "../../deploy/nats/credentials.js";
import type { NatsIdentity } from "../../deploy/nats/permissions.js";
import { makeDevCa, makeServerCert } from "../../deploy/tls/dev_ca.js";
import { DEFAULT_ROLE_BUCKET } from "../../proto/index.js";
import { freePort, type NatsServer, startNatsServer } from "./nats_server.js";

export interface SecureNats {
  server: NatsServer;
  /** A tls:// URL of the server. */
  url: string;
  dir: string;
  /** The CA that signed the server's certificate. */
  caFile: string;
  credentials: NatsCredentials;
  /** The `nats:` section of an identity, as an agent config or plan takes it. */
  section(name: string): Record<string, unknown>;
  /** The validated client config of an identity. */
  client(name: string): NatsClientConfig;
  /** Connects as `name` (no reconnects: a refused connection fails at once). */
  connectAs(name: string): Promise<NatsConnection>;
  close(): Promise<void>;
}

/** Identities of one pair (nodes node-a and node-b) and a second pair, a controller and a viewer, in cluster `c1`. */
export function standardIdentities(cluster = "c1", leaseBucket = DEFAULT_ROLE_BUCKET): NatsIdentity[] {
  const node = (pair: string, n: string): NatsIdentity => ({
    kind: "node",
    name: n,
    cluster,
    pair,
    node: n,
    leaseBucket,
  });
  return [
    node("p1", "node-a"),
    node("p1", "node-b"),
    node("p2", "node-c"),
    { kind: "controller", name: "ctl", cluster },
    { kind: "viewer", name: "view", cluster, leaseBucket },
    { kind: "admin", name: "admin", leaseBuckets: [leaseBucket] },
  ];
}

/** Starts the hardened server with `identities` (and makes the lease buckets as the admin). */
export async function startSecureNats(identities = standardIdentities()): Promise<SecureNats> {
  const dir = await mkdtemp(path.join(tmpdir(), "hotpatch-secure-nats-"));
  const ca = await makeDevCa(path.join(dir, "pki"));
  const tls = await makeServerCert(path.join(dir, "pki"), ca, "nats");
  // The port is fixed before the configs are written (clients get the URL); on a clash, new port, new files.
  let server: NatsServer | null = null;
  let url = "";
  let credentials: NatsCredentials | null = null;
  for (let attempt = 1; server === null; attempt++) {
    const port = await freePort();
    url = `tls://127.0.0.1:${port}`;
    credentials = await makeNatsCredentials(dir, identities, {
      listen: `127.0.0.1:${port}`,
      storeDir: path.join(dir, "store"),
      tls: { cert: tls.cert, key: tls.key, ca: ca.cert },
      clientUrls: [url],
    });
    try {
      server = await startNatsServer(port, credentials.serverConfig);
    } catch (err) {
      if (attempt >= 5 || !/address already in use/i.test(String((err as Error).message))) throw err;
    }
  }
  const creds = credentials as NatsCredentials;
  const section = (name: string) => {
    const u = creds.users[name];
    if (!u) throw new Error(`no NATS identity ${name}`);
    return u.section;
  };
  const client = (name: string) => {
    const r = new FieldReader(dir);
    const cfg = readNatsClient(r, section(name), "nats");
    if (r.issues.length > 0) throw new Error(JSON.stringify(r.issues));
    return cfg;
  };
  const connectAs = async (name: string) =>
    connect({ ...(await natsConnectOptions(client(name))), maxReconnectAttempts: 0, name });
  // As an operator would, through the helper's provision step.
  for (const a of identities)
    if (a.kind === "admin")
      for (const b of a.leaseBuckets) await provisionLeaseBucket(creds.users[a.name]?.clientConfig ?? "", b);
  return {
    server,
    url,
    dir,
    caFile: ca.cert,
    credentials: creds,
    section,
    client,
    connectAs,
    async close() {
      await server?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
