/** Errors of calls to the agents. Each carries a stable `code`, a `context` object and the `cause`. */
import { CodedError } from "../../common/index.js";

/** Stable codes of agent call errors. */
export type AgentCallErrorCode =
  /** An agent call failed (unreachable, refused, past its deadline); the message names the node and the gRPC status. */
  "EAGENT";

/** What an agent call was about. */
export interface AgentCallContext {
  /** Node whose agent was called. */
  node: string;
  /** The call (Info, Apply, ...), when one was made. */
  what?: string;
  /** Name of the gRPC status, "" when the call did not get one. */
  grpcCode?: string;
}

/** A failed call to one node's agent. */
export class AgentCallError extends CodedError<AgentCallErrorCode, AgentCallContext> {
  override readonly name = "AgentCallError";
}
