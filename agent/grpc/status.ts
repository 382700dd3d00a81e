/** gRPC status codes for agent errors: the code an operator or client acts on. */
import { Metadata, type ServerErrorResponse, status } from "@grpc/grpc-js";
import { AgentError, type AgentErrorCode } from "../errors.js";

const byCode: Record<AgentErrorCode, status> = {
  ECONFIG: status.INTERNAL,
  EBAD_ARGUMENT: status.INVALID_ARGUMENT,
  ENOT_ALLOWED: status.PERMISSION_DENIED,
  ENOT_STAGED: status.FAILED_PRECONDITION,
  ENOT_FOUND: status.NOT_FOUND,
  ETOO_LARGE: status.RESOURCE_EXHAUSTED,
  EBAD_BUNDLE: status.INVALID_ARGUMENT,
  ENOT_TRUSTED: status.PERMISSION_DENIED,
  EPRECONDITION: status.FAILED_PRECONDITION,
  EDEADLINE: status.DEADLINE_EXCEEDED,
  ECANCELLED: status.CANCELLED,
  EHOOK: status.ABORTED,
  ENATS: status.UNAVAILABLE,
  ESCRAPE: status.UNAVAILABLE,
  EBAD_METRICS: status.INTERNAL,
  EINTERNAL: status.INTERNAL,
};

/** Turns any failure into a gRPC error: status from the stable code, message `[CODE] text`, code also in trailer `hotpatch-code`. */
export function toGrpcError(err: unknown, signal?: AbortSignal): ServerErrorResponse {
  let code: AgentErrorCode = "EINTERNAL";
  let message = err instanceof Error ? err.message : String(err);
  if (err instanceof AgentError) code = err.code;
  else if (signal?.aborted) {
    // Only the call's own signal makes it a deadline or a cancel; a timeout inside the work (a NATS
    // request) is that work's failure, reported as it is.
    const deadline = (signal.reason as Error)?.name === "TimeoutError";
    code = deadline ? "EDEADLINE" : "ECANCELLED";
    message = deadline ? "the call's deadline passed before the agent finished" : "the call was cancelled";
  }
  const metadata = new Metadata();
  metadata.set("hotpatch-code", code);
  return Object.assign(new Error(`[${code}] ${message}`), {
    code: byCode[code],
    details: `[${code}] ${message}`,
    metadata,
  });
}
