/** Errors of the cluster view. Each carries a stable `code`, a `context` object and the `cause`. */

/** Stable codes of cluster view errors. */
export type ClusterErrorCode =
  /** The NATS server could not be reached. */
  | "ENATS_CONNECT"
  /** A cluster, pair or node name cannot be used in a NATS subject or KV key. */
  | "EBAD_NAME";

export class ClusterError extends Error {
  override readonly name = "ClusterError";
  constructor(
    readonly code: ClusterErrorCode,
    message: string,
    readonly context: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
