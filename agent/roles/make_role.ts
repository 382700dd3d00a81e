/** Builds the role controller the configuration asks for. */
import type { NatsConnection } from "@nats-io/transport-node";
import { pairLeaseKey } from "../../proto/index.js";
import type { AgentConfig } from "../config/types.js";
import { ExternalRole } from "./external_role.js";
import { ManagedRole } from "./managed_role.js";
import { StaticRole } from "./static_role.js";
import type { RoleController } from "./types.js";

/** Builds the role source; `nc` is needed (only) for a managed role. */
export function makeRole(
  config: AgentConfig,
  nc: NatsConnection | null,
  log: (msg: string, err?: unknown) => void,
): RoleController {
  const r = config.role;
  // Hooks and role commands learn who they act for through the environment.
  const env = { HOTPATCH_NODE: config.node, HOTPATCH_PAIR: config.pair, HOTPATCH_CLUSTER: config.cluster };
  if (r.source === "static") return new StaticRole(r.role, r.hooks, env);
  if (r.source === "external") {
    const src = r.command
      ? { kind: "command" as const, command: r.command }
      : { kind: "file" as const, file: r.file ?? "" };
    return new ExternalRole(src, r.pollMs, r.hooks, env, (err) => log("external role source failed", err));
  }
  if (!nc) throw new Error("a managed role needs the NATS connection");
  return new ManagedRole(
    nc,
    {
      node: config.node,
      key: pairLeaseKey(config),
      bucket: r.bucket,
      leaseTtlMs: r.leaseTtlMs,
      renewMs: r.renewMs,
      demoteAfterMs: r.demoteAfterMs,
      hooks: r.hooks,
    },
    env,
    log,
  );
}
