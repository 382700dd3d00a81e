/**
 * Who may call what on the agent's gRPC service. The caller is the CN of its verified client
 * certificate; its role comes from `grpc.roles` in the agent config, and a method answers only the
 * roles listed for it here (deny by default: a CN no role names, and a method not in the table,
 * are refused). A certificate made for a server (extended key usage serverAuth, as a node's) or
 * one that does not say clientAuth is no client certificate, whatever its CN.
 */
import type { ServerUnaryCall } from "@grpc/grpc-js";
import type { AgentServiceServer } from "../../proto/index.js";
import type { GrpcRoles } from "../config/types.js";

/** A role a client certificate can hold. */
export type GrpcRole = keyof GrpcRoles;

const change: readonly GrpcRole[] = ["operator", "controller"];
const read: readonly GrpcRole[] = ["operator", "controller", "viewer"];

/** The roles each method answers; a method missing here answers nobody. */
const allowed: Partial<Record<keyof AgentServiceServer | "deleteBundle", readonly GrpcRole[]>> = {
  info: read,
  listProcesses: read,
  status: read,
  watchEvents: read,
  stageBundle: change,
  apply: change,
  revert: change,
  switchover: change,
  deleteBundle: change,
};

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

/** What grpc-js tells of a call's transport (its AuthContext type is not exported). */
type AuthContext = ReturnType<ServerUnaryCall<unknown, unknown>["getAuthContext"]>;

/** Who is calling, as far as the transport says. */
export type Caller =
  /** grpc.insecure (loopback only): no identity, every local caller is trusted as an operator. */
  | { kind: "insecure"; actor: "insecure" }
  /** A verified client certificate; `refusal` says why it may call nothing, when so. */
  | { kind: "certificate"; actor: string; role: GrpcRole | null; refusal: string | null };

/** The caller of a call with `ctx`, judged against `roles`. */
export function callerOf(ctx: AuthContext, roles: GrpcRoles): Caller {
  if (ctx.transportSecurityType !== "ssl") return { kind: "insecure", actor: "insecure" };
  const cert = ctx.sslPeerCertificate;
  const cn = cert?.subject?.CN;
  const actor = typeof cn === "string" && cn ? cn : "unknown-cn";
  const usages = cert?.ext_key_usage ?? [];
  let refusal: string | null = null;
  if (usages.includes(SERVER_AUTH))
    refusal = `the certificate of ${actor} is a server certificate (extended key usage serverAuth); a node's certificate is not a client certificate`;
  else if (!usages.includes(CLIENT_AUTH))
    refusal = `the certificate of ${actor} does not say extendedKeyUsage clientAuth; issue a client certificate`;
  const role = (Object.keys(roles) as GrpcRole[]).find((r) => roles[r].includes(actor)) ?? null;
  if (!refusal && role === null)
    refusal = `${actor} holds no role on this agent (grpc.roles names operators, controllers and viewers)`;
  return { kind: "certificate", actor, role, refusal };
}

/** Null when `caller` may call `method`, else why not. */
export function refusalFor(caller: Caller, method: string): string | null {
  if (caller.kind === "insecure") return null;
  if (caller.refusal) return caller.refusal;
  const roles = allowed[method as keyof typeof allowed] ?? [];
  if (caller.role && roles.includes(caller.role)) return null;
  return roles.length === 0
    ? `${method} answers no role`
    : `${caller.actor} is a ${caller.role}; ${method} needs one of the roles ${roles.join(", ")}`;
}
