import { CodedError, type FieldIssue } from "../common/index.js";

/** Stable codes of agent failures. Operators, the controller and scripts match on these, never on messages. */
export type AgentErrorCode =
  /** The configuration file is missing, not YAML, or has bad fields (see `ConfigError.issues`). */
  | "ECONFIG"
  /** A request field is malformed (an empty selector, a bad bundle id, a bad role). */
  | "EBAD_ARGUMENT"
  /** The target is not on the agent's allow-list of executables and libraries. */
  | "ENOT_ALLOWED"
  /** The bundle is not staged on this host. */
  | "ENOT_STAGED"
  /** The thing asked about does not exist (no such process, no such patch in it). */
  | "ENOT_FOUND"
  /** The bundle upload was larger than announced or than the agent accepts. */
  | "ETOO_LARGE"
  /** The bundle did not verify (hash, manifest, patch.so). */
  | "EBAD_BUNDLE"
  /** The bundle is unsigned, or signed by a key this agent does not trust (config: trustedKeys). */
  | "ENOT_TRUSTED"
  /** The operation is not possible in the agent's current state (role source, lease held by the peer). */
  | "EPRECONDITION"
  /** The request's deadline passed before the work was done. */
  | "EDEADLINE"
  /** The request was cancelled by the caller. */
  | "ECANCELLED"
  /** A promote/demote hook failed or timed out. */
  | "EHOOK"
  /** NATS could not be reached or refused an operation. */
  | "ENATS"
  /** A service metrics source could not be read (HTTP error or timeout, command failed, process gone). */
  | "ESCRAPE"
  /** A metrics source answered, but not in the Prometheus text format, or with more samples than allowed. */
  | "EBAD_METRICS"
  /** A failure the agent did not expect; the message says what happened. */
  | "EINTERNAL";

/** What an agent error was about. Every field is optional; set what is known. */
export interface AgentErrorContext {
  /** Target process. */
  pid?: number;
  /** Bundle or patch id. */
  bundleId?: string;
  /** File or executable involved. */
  path?: string;
  /** Config field (dotted path) involved. */
  field?: string;
  /** Service metrics source involved, `<service>.<proc|http|exec>`. */
  source?: string;
  /** Line of a metrics text (1-based) that could not be parsed. */
  line?: number;
}

/** A failure of the agent, with a stable code, what it was working on, and the underlying cause. */
export class AgentError extends CodedError<AgentErrorCode, AgentErrorContext> {
  override readonly name: string = "AgentError";
}

/** One bad field of a configuration file. */
export type ConfigIssue = FieldIssue;

/** A configuration that cannot be used; `issues` names every bad field (not just the first). */
export class ConfigError extends AgentError {
  override readonly name = "ConfigError";
  readonly issues: ConfigIssue[];

  constructor(source: string, issues: ConfigIssue[], options?: ErrorOptions) {
    const lines = issues.map((i) => `  ${i.field}: ${i.message}`).join("\n");
    super("ECONFIG", `${source}: ${issues.length} bad field${issues.length === 1 ? "" : "s"}:\n${lines}`, {}, options);
    this.issues = issues;
  }
}
