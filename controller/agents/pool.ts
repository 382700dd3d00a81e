/**
 * gRPC glue to the agents: one AgentServiceClient per node, promise-shaped calls with a deadline
 * and an AbortSignal each, and errors that name the node and the gRPC status.
 */
import { readFileSync } from "node:fs";
import {
  type ChannelCredentials,
  type ClientUnaryCall,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import {
  AgentServiceClient,
  type ApplyResponse,
  Consistency,
  type InfoResponse,
  type ProcessSelector,
  type RevertResponse,
  Role,
  type StageBundleResponse,
  type SwitchoverResponse,
} from "../../proto/index.js";
import { AgentCallError } from "./errors.js";
import type { AgentEndpoints, TargetSelector, UploadBundle } from "./types.js";

const CHUNK = 256 * 1024;

/** The calls the rollout makes on one node's agent. */
export interface AgentApi {
  /** Node name. */
  readonly node: string;
  info(signal: AbortSignal): Promise<InfoResponse>;
  stage(bundle: UploadBundle, signal: AbortSignal): Promise<StageBundleResponse>;
  apply(
    bundleId: string,
    target: TargetSelector,
    consistency: "strict" | "entry",
    by: string,
    signal: AbortSignal,
  ): Promise<ApplyResponse>;
  revert(bundleId: string, target: TargetSelector, by: string, signal: AbortSignal): Promise<RevertResponse>;
  switchover(role: "active" | "standby", by: string, signal: AbortSignal): Promise<SwitchoverResponse>;
}

function toSelector(t: TargetSelector): ProcessSelector {
  return {
    exePath: t.exePath ?? "",
    buildId: t.buildId ?? "",
    pid: 0,
    cgroup: t.cgroup ?? "",
    libraryPath: t.libraryPath ?? "",
  };
}

function agentError(node: string, what: string, err: unknown): AgentCallError {
  const se = err as Partial<ServiceError>;
  const code = typeof se.code === "number" ? (status[se.code] ?? String(se.code)) : "";
  const detail = se.details ?? (err instanceof Error ? err.message : String(err));
  return new AgentCallError(
    "EAGENT",
    `agent ${node}: ${what} failed${code ? ` (${code})` : ""}: ${detail}`,
    {
      node,
      what,
      grpcCode: code,
    },
    { cause: err },
  );
}

/** Opens gRPC channels to agents on demand and closes them all at the end. */
export class AgentPool {
  readonly #clients = new Map<string, AgentServiceClient>();
  readonly #creds: ChannelCredentials;

  constructor(
    private readonly endpoints: AgentEndpoints,
    /** Address a node announced in its heartbeat, when the plan does not list it. */
    private readonly announced: (node: string) => string,
  ) {
    const s = endpoints.security;
    this.#creds =
      s.kind === "insecure"
        ? credentials.createInsecure()
        : credentials.createSsl(readFileSync(s.ca), readFileSync(s.key), readFileSync(s.cert));
  }

  #client(node: string): AgentServiceClient {
    let c = this.#clients.get(node);
    if (c) return c;
    const address = this.endpoints.nodes[node] ?? this.announced(node);
    if (!address) {
      throw new AgentCallError(
        "EAGENT",
        `no gRPC address for node ${node}: list it under agents.nodes in the plan, or run an agent that announces grpc_address in its heartbeat`,
        { node },
      );
    }
    c = new AgentServiceClient(address, this.#creds);
    this.#clients.set(node, c);
    return c;
  }

  #unary<Req, Res>(
    node: string,
    what: string,
    signal: AbortSignal,
    call: (
      client: AgentServiceClient,
      req: Req,
      options: { deadline: Date },
      cb: (err: ServiceError | null, res: Res) => void,
    ) => ClientUnaryCall,
    req: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(agentError(node, what, signal.reason));
        return;
      }
      const deadline = new Date(Date.now() + this.endpoints.callTimeoutMs);
      const onAbort = () => pending.cancel();
      const pending = call(this.#client(node), req, { deadline }, (err, res) => {
        signal.removeEventListener("abort", onAbort);
        if (err) reject(agentError(node, what, err));
        else resolve(res);
      });
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** The calls for one node. */
  agent(node: string): AgentApi {
    return {
      node,
      info: (signal) => this.#unary(node, "Info", signal, (c, r, o, cb) => c.info(r, new Metadata(), o, cb), {}),
      stage: (bundle, signal) => this.#stage(node, bundle, signal),
      apply: (bundleId, target, consistency, by, signal) =>
        this.#unary(node, "Apply", signal, (c, r, o, cb) => c.apply(r, new Metadata(), o, cb), {
          bundleId,
          selector: toSelector(target),
          consistency: consistency === "entry" ? Consistency.CONSISTENCY_ENTRY : Consistency.CONSISTENCY_STRICT,
          safetyTimeoutMs: 0,
          requestedBy: by,
          followNewProcesses: true,
        }),
      revert: (bundleId, target, by, signal) =>
        this.#unary(node, "Revert", signal, (c, r, o, cb) => c.revert(r, new Metadata(), o, cb), {
          bundleId,
          selector: toSelector(target),
          unload: false,
          requestedBy: by,
        }),
      switchover: (role, by, signal) =>
        this.#unary(node, "Switchover", signal, (c, r, o, cb) => c.switchover(r, new Metadata(), o, cb), {
          targetRole: role === "active" ? Role.ROLE_ACTIVE : Role.ROLE_STANDBY,
          requestedBy: by,
        }),
    };
  }

  #stage(node: string, bundle: UploadBundle, signal: AbortSignal): Promise<StageBundleResponse> {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.endpoints.callTimeoutMs);
      const onAbort = () => stream.cancel();
      const stream = this.#client(node).stageBundle(new Metadata(), { deadline }, (err, res) => {
        signal.removeEventListener("abort", onAbort);
        if (err) reject(agentError(node, "StageBundle", err));
        else resolve(res);
      });
      signal.addEventListener("abort", onAbort, { once: true });
      stream.write({
        part: { $case: "header", value: { bundleId: bundle.id, size: bundle.bytes.length, sha256: bundle.sha256 } },
      });
      for (let off = 0; off < bundle.bytes.length; off += CHUNK) {
        stream.write({ part: { $case: "chunk", value: bundle.bytes.subarray(off, off + CHUNK) } });
      }
      stream.end();
    });
  }

  /** Closes every channel. */
  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}
