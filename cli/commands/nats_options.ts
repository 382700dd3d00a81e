/** The NATS options every controller command takes: servers, and a file with the identity's `nats:` section (credentials, TLS). */
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import { parse } from "yaml";
import { FieldReader } from "../../common/index.js";
import { type NatsClientConfig, readNatsClient } from "../../common/nats_client.js";
import { ClusterError } from "../../controller/cluster/index.js";

/** What the NATS options hold once parsed. */
export interface NatsCliOptions {
  nats?: string;
  natsConfig?: string;
}

const DEFAULT_SERVERS = "nats://127.0.0.1:4222";

/** Adds --nats and --nats-config to `cmd`. */
export function natsOptions(cmd: Command, serversHelp = "NATS servers, comma-separated"): Command {
  return cmd
    .option("--nats <urls>", `${serversHelp} (default $HOTPATCH_NATS, the --nats-config file's, or ${DEFAULT_SERVERS})`)
    .option(
      "--nats-config <file>",
      "YAML file whose nats: section gives servers, credentials (user/password, token, nkey, creds) and TLS, as deploy/nats/credentials.ts writes it (default $HOTPATCH_NATS_CONFIG)",
    );
}

/** Reads the `nats:` section of a file (ENATS_CONFIG naming every bad field). */
export async function readNatsConfigFile(file: string): Promise<NatsClientConfig> {
  let doc: unknown;
  try {
    doc = parse(await readFile(file, "utf8"));
  } catch (cause) {
    throw new ClusterError(
      "ENATS_CONFIG",
      `cannot read the NATS config ${file}: ${(cause as Error).message}`,
      { file },
      { cause },
    );
  }
  const r = new FieldReader(path.dirname(path.resolve(file)));
  const top = r.mapping(doc, "(top level)", ["nats"]);
  const cfg = readNatsClient(r, top?.nats, "nats");
  if (r.issues.length > 0)
    throw new ClusterError("ENATS_CONFIG", `${file}: ${r.issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`, {
      file,
    });
  return cfg;
}

/**
 * Where and as whom the command connects: the --nats-config file (or $HOTPATCH_NATS_CONFIG), its
 * servers replaced by --nats (or $HOTPATCH_NATS) when given; without a file, plain servers.
 * `fallback` is the plan's section, when the command has a plan: then only the flags override it,
 * not the environment.
 */
export async function natsTarget(o: NatsCliOptions, fallback?: NatsClientConfig): Promise<NatsClientConfig> {
  const env = fallback ? {} : process.env;
  const file = o.natsConfig ?? env.HOTPATCH_NATS_CONFIG;
  const urls = o.nats ?? env.HOTPATCH_NATS;
  const base = file
    ? await readNatsConfigFile(file)
    : (fallback ?? { servers: [DEFAULT_SERVERS], auth: { kind: "none" as const }, tls: null, inboxPrefix: "_INBOX" });
  return urls ? { ...base, servers: urls.split(",") } : base;
}
