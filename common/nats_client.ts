/**
 * How the agent and the controller reach NATS: servers, credentials (user and password, token,
 * nkey seed or creds file), TLS (CA, client certificate) and the reply inbox prefix. One parser
 * for the `nats:` section of the agent's config and the rollout plan, one place that turns it into
 * client options.
 */
import { readFile } from "node:fs/promises";
import {
  type ConnectionOptions,
  credsAuthenticator,
  nkeyAuthenticator,
  type TlsOptions,
} from "@nats-io/transport-node";
import { type FieldReader, fieldPath } from "./fields.js";

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

const urlRe = /^(nats|tls):\/\/[^\s/]+:(\d{1,5})$/;
const subjectPrefixRe = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const keys = ["servers", "user", "password", "token", "nkey", "creds", "tls", "inboxPrefix"] as const;

/**
 * Reads a `nats:` section at `field` with `r` (every problem recorded under its dotted path). With
 * `fallbackServers`, the section and its servers may be left out.
 */
export function readNatsClient(
  r: FieldReader,
  v: unknown,
  field: string,
  fallbackServers?: string[],
): NatsClientConfig {
  const f = (k: string) => fieldPath(field, k);
  const out = plainNats(fallbackServers ?? []);
  if (v === undefined && fallbackServers) return out;
  const o = r.mapping(v, field, keys);
  if (!o) return out;
  if (o.servers !== undefined || !fallbackServers) {
    const list = r.list(o.servers, f("servers")) ?? [];
    if (Array.isArray(o.servers) && list.length === 0)
      r.bad(f("servers"), "expected a list of at least one URL such as nats://127.0.0.1:4222");
    out.servers = list.map(
      (s, i) =>
        r.value(s, fieldPath(f("servers"), i), "a URL like nats://127.0.0.1:4222 or tls://host:4222", (u) => {
          const m = typeof u === "string" ? urlRe.exec(u) : null;
          return m && Number(m[2]) <= 65535 ? (u as string) : null;
        }) ?? "",
    );
  }
  const given = (["user", "token", "nkey", "creds"] as const).filter((k) => o[k] !== undefined);
  if (given.length > 1) r.bad(field, `expected one kind of credentials, got ${given.join(" and ")}`);
  if (o.password !== undefined && o.user === undefined) r.bad(f("password"), "expected user beside password");
  if (given[0] === "user") {
    const user = r.string(o.user, f("user")) ?? "";
    const password =
      o.password === undefined
        ? r.bad(f("password"), "expected a password for user")
        : r.string(o.password, f("password"));
    out.auth = { kind: "password", user, password: password ?? "" };
  } else if (given[0] === "token") out.auth = { kind: "token", token: r.string(o.token, f("token")) ?? "" };
  else if (given[0] === "nkey") out.auth = { kind: "nkey", seedFile: r.file(o.nkey, f("nkey")) ?? "" };
  else if (given[0] === "creds") out.auth = { kind: "creds", file: r.file(o.creds, f("creds")) ?? "" };
  if (o.tls !== undefined) {
    const at = f("tls");
    const t = r.mapping(o.tls, at, ["ca", "cert", "key"]);
    if (t) {
      const ca =
        t.ca === undefined
          ? r.bad(fieldPath(at, "ca"), "expected the CA file that signs the server's certificate")
          : r.file(t.ca, fieldPath(at, "ca"));
      const cert = t.cert === undefined ? undefined : r.file(t.cert, fieldPath(at, "cert"));
      const key = t.key === undefined ? undefined : r.file(t.key, fieldPath(at, "key"));
      if ((t.cert === undefined) !== (t.key === undefined))
        r.bad(at, "expected both cert and key for a client certificate, or neither");
      out.tls = { ca: ca ?? "", ...(cert && key ? { cert, key } : {}) };
    }
  }
  if (o.inboxPrefix !== undefined)
    out.inboxPrefix =
      r.matching(
        o.inboxPrefix,
        f("inboxPrefix"),
        subjectPrefixRe,
        "subject tokens such as _INBOX.node-a (no wildcards)",
      ) ?? out.inboxPrefix;
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
