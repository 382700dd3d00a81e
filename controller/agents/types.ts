/** How the controller reaches the agents, and what it asks them about. */

/** How the controller authenticates to the agents: mutual TLS, or explicitly none. */
export type AgentSecurity =
  | {
      kind: "mtls";
      /** CA that signed the agents' certificates (PEM file). */
      ca: string;
      /** The controller's client certificate (PEM file). */
      cert: string;
      /** The controller's private key (PEM file). */
      key: string;
    }
  | { kind: "insecure" };

/** Where the controller finds each node's agent. */
export interface AgentEndpoints {
  /** TLS files, or insecure. */
  security: AgentSecurity;
  /** host:port per node name; nodes not listed use the address their heartbeat announces. */
  nodes: Record<string, string>;
  /** Deadline of each agent call (apply and revert may take a while on many processes). */
  callTimeoutMs: number;
}

/** The process selector a patch is applied to (every set field must match). */
export interface TargetSelector {
  /** Executable path. */
  exePath?: string;
  /** GNU build-id, lowercase hex. */
  buildId?: string;
  /** cgroup path. */
  cgroup?: string;
  /** Shared library path the process maps. */
  libraryPath?: string;
}

/** A bundle as uploaded to an agent: the bytes of its tar and their hash. */
export interface UploadBundle {
  /** Bundle id, from its manifest. */
  id: string;
  /** The tar. */
  bytes: Buffer;
  /** sha256 of `bytes`, lowercase hex. */
  sha256: string;
}
