/**
 * How the agent and the controller reach NATS: servers, credentials (user and password, token,
 * nkey seed or creds file), TLS (CA, client certificate) and the reply inbox prefix. One parser
 * for the `nats:` section of the agent's config and the rollout plan, one place that turns it into
 * client options.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  type ConnectionOptions,
  credsAuthenticator,
  nkeyAuthenticator,
  type TlsOptions,
} from "@nats-io/transport-node";

/** How a client proves who it is; `none` only for a lab server that asks nothing. */
export type NatsAuth =
  | { kind: "none" }
  | { kind: "password"; user: string; password: string }
  | { kind: "token"; token: string }
  /** File holding the user's nkey seed (`SU…`); the server config holds only its public key. */
  | { kind: "nkey"; seedFile: string }
  /** A `.creds` file (user JWT and seed) for servers in operator mode. */
  | { kind: "creds"; file: string };

/** TLS towards the server: the CA that signs its certificate, and optionally our client certificate. */
export interface NatsTls {
  ca: string;
  cert?: string;
  key?: string;
}

/** The `nats:` section, validated. Paths are absolute. */
export interface NatsClientConfig {
  servers: string[];
  auth: NatsAuth;
  tls: NatsTls | null;
  /** Replies to this client's requests arrive under `<inboxPrefix>.`; a least-privilege server lets only it read there. */
  inboxPrefix: string;
}

/** A `nats:` section that uses the lab defaults: no credentials, no TLS. */
export function plainNats(servers: string[]): NatsClientConfig {
  return { servers, auth: { kind: "none" }, tls: null, inboxPrefix: "_INBOX" };
}

const urlRe = /^(nats|tls):\/\/[^\s/]+:\d{1,5}$/;
const subjectPrefixRe = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const keys = ["servers", "user", "password", "token", "nkey", "creds", "tls", "inboxPrefix"];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Validates a `nats:` section. Every problem is passed to `bad(field, message)` with its dotted path
 * under `field`; the result is usable (with fallbacks) even then. Relative paths resolve against `baseDir`.
 */
export function parseNatsClientConfig(
  v: unknown,
  field: string,
  baseDir: string,
  bad: (field: string, message: string) => void,
  fallbackServers?: string[],
): NatsClientConfig {
  const f = (k: string) => `${field}.${k}`;
  const out = plainNats(fallbackServers ?? []);
  if (v === undefined && fallbackServers) return out;
  if (!isObj(v)) {
    bad(field, `expected a mapping with servers (and credentials), got ${JSON.stringify(v) ?? "nothing"}`);
    return out;
  }
  for (const k of Object.keys(v)) if (!keys.includes(k)) bad(f(k), `unknown field; expected one of ${keys.join(", ")}`);
  const str = (k: string): string | undefined => {
    const x = v[k];
    if (x === undefined) return undefined;
    if (typeof x === "string" && x.length > 0 && x.length <= 4096) return x;
    bad(f(k), `expected a non-empty string, got ${JSON.stringify(x)}`);
    return undefined;
  };
  const file = (k: string, x = str(k)) => (x === undefined ? undefined : path.resolve(baseDir, x));

  if (v.servers === undefined && fallbackServers) out.servers = fallbackServers;
  else if (!Array.isArray(v.servers) || v.servers.length === 0)
    bad(f("servers"), "expected a list of at least one URL such as nats://127.0.0.1:4222");
  else
    out.servers = v.servers.map((s, i) => {
      if (typeof s === "string" && urlRe.test(s) && Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535) return s;
      bad(
        `${f("servers")}[${i}]`,
        `expected a URL like nats://127.0.0.1:4222 or tls://host:4222, got ${JSON.stringify(s)}`,
      );
      return "";
    });

  const given = (["user", "token", "nkey", "creds"] as const).filter((k) => v[k] !== undefined);
  if (given.length > 1) bad(field, `expected one kind of credentials, got ${given.join(" and ")}`);
  const user = str("user");
  const password = str("password");
  if (v.password !== undefined && v.user === undefined) bad(f("password"), "expected user beside password");
  if (given[0] === "user") {
    if (password === undefined) bad(f("password"), "expected a password for user");
    out.auth = { kind: "password", user: user ?? "", password: password ?? "" };
  } else if (given[0] === "token") out.auth = { kind: "token", token: str("token") ?? "" };
  else if (given[0] === "nkey") out.auth = { kind: "nkey", seedFile: file("nkey") ?? "" };
  else if (given[0] === "creds") out.auth = { kind: "creds", file: file("creds") ?? "" };

  if (v.tls !== undefined) {
    const t = v.tls;
    if (!isObj(t)) bad(f("tls"), `expected a mapping {ca, cert, key}, got ${JSON.stringify(t)}`);
    else {
      for (const k of Object.keys(t))
        if (!["ca", "cert", "key"].includes(k)) bad(`${f("tls")}.${k}`, "unknown field; expected one of ca, cert, key");
      const tf = (k: string) => {
        const x = t[k];
        if (x === undefined) return undefined;
        if (typeof x === "string" && x.length > 0) return path.resolve(baseDir, x);
        bad(`${f("tls")}.${k}`, `expected a file path, got ${JSON.stringify(x)}`);
        return undefined;
      };
      const [ca, cert, key] = [tf("ca"), tf("cert"), tf("key")];
      if (ca === undefined) bad(`${f("tls")}.ca`, "expected the CA file that signs the server's certificate");
      if ((cert === undefined) !== (key === undefined))
        bad(f("tls"), "expected both cert and key for a client certificate, or neither");
      out.tls = { ca: ca ?? "", ...(cert && key ? { cert, key } : {}) };
    }
  }
  const prefix = str("inboxPrefix");
  if (prefix !== undefined) {
    if (subjectPrefixRe.test(prefix)) out.inboxPrefix = prefix;
    else bad(f("inboxPrefix"), `expected subject tokens such as _INBOX.node-a (no wildcards), got "${prefix}"`);
  }
  return out;
}

/** A credentials or TLS file could not be read. */
export class NatsCredentialsError extends Error {
  readonly code = "ENATS_CREDENTIALS";
  constructor(
    message: string,
    readonly file: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "NatsCredentialsError";
  }
}

async function readSecret(what: string, file: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(file));
  } catch (cause) {
    throw new NatsCredentialsError(`cannot read the NATS ${what} ${file}: ${(cause as Error).message}`, file, {
      cause,
    });
  }
}

/** Client options for `cfg`: credentials read from their files now, TLS when configured. */
export async function natsConnectOptions(cfg: NatsClientConfig): Promise<ConnectionOptions> {
  const opts: ConnectionOptions = { servers: cfg.servers, inboxPrefix: cfg.inboxPrefix };
  const a = cfg.auth;
  if (a.kind === "password") Object.assign(opts, { user: a.user, pass: a.password });
  else if (a.kind === "token") opts.token = a.token;
  else if (a.kind === "nkey") {
    const seed = new TextDecoder().decode(await readSecret("nkey seed", a.seedFile)).trim();
    opts.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  } else if (a.kind === "creds") opts.authenticator = credsAuthenticator(await readSecret("creds file", a.file));
  if (cfg.tls) {
    const tls: TlsOptions = { caFile: cfg.tls.ca };
    if (cfg.tls.cert && cfg.tls.key) Object.assign(tls, { certFile: cfg.tls.cert, keyFile: cfg.tls.key });
    for (const file of [cfg.tls.ca, cfg.tls.cert, cfg.tls.key]) if (file) await readSecret("TLS file", file);
    opts.tls = tls;
  }
  return opts;
}
