/** Types of the demo tools: endpoints, one request's outcome, load generator options and summary. */

/** A TCP endpoint of the demo service, always on loopback. */
export interface Endpoint {
  /** Loopback address (127.x.x.x or ::1). */
  host: string;
  /** TCP port. */
  port: number;
}

/** Why a request got no answer. */
export type FailureKind =
  /** The connection could not be made (refused, unreachable). */
  | "connect"
  /** No complete answer within the request's deadline. */
  | "timeout"
  /** The connection was reset or closed before the answer line arrived. */
  | "reset"
  /** An answer arrived but was not one the protocol allows (an `ERR` line or garbage). */
  | "protocol";

/** What one line sent to one endpoint produced. */
export type LineResult =
  /** The service answered this line (without its newline). */
  | { kind: "answer"; line: string }
  /** No answer: why, and the system's words for it. */
  | { kind: "failure"; failure: FailureKind; detail: string }
  /** The caller's AbortSignal fired first; the request does not count. */
  | { kind: "aborted" };

/** What one QUOTE request produced, after the answer was checked against the correct price. */
export type QuoteOutcome =
  /** An active node answered: with which code version and whether the price was right. */
  | { kind: "served"; version: string; correct: boolean }
  /** Only standby answers (every endpoint tried said STANDBY). */
  | { kind: "standby" }
  /** No valid answer: the last failure seen. */
  | { kind: "failed"; failure: FailureKind };

/**
 * How requests pick an endpoint.
 * - `spread`: request i goes to endpoint i mod n, one attempt; every answer and failure counts.
 * - `failover`: a client of an active/standby pair: it sends to the endpoint that last served, and
 *   on STANDBY or a failure tries the others once each; a request fails only when none served it.
 */
export type Strategy = "spread" | "failover";

/** Options of one load generator run. At least one bound holds: duration, request count, or both. */
export interface LoadgenOptions {
  /** Where to send requests, as `host:port` strings or endpoints; loopback only. */
  endpoints: ReadonlyArray<string | Endpoint>;
  /** Requests in flight at once (1..256). Default 4. */
  concurrency?: number;
  /** Stop issuing requests after this long (1 ms..1 h). Default 10 s when `requests` is not given. */
  durationMs?: number;
  /** Stop after this many requests (1..10,000,000). */
  requests?: number;
  /** Cap on requests started per second, over all workers. Default: no cap. */
  ratePerSec?: number;
  /** Deadline of one attempt, connect to answer (1 ms..60 s). Default 1000 ms. */
  timeoutMs?: number;
  /** How requests pick an endpoint. Default `spread`. */
  strategy?: Strategy;
  /** Quantities asked for cycle through 0..maxQuantity (0..1,000,000). Default 1000. */
  maxQuantity?: number;
  /** Aborts the run: no new requests, in-flight ones are dropped uncounted, `done` resolves. */
  signal?: AbortSignal;
}

/** Answers of one code version. */
export interface VersionCount {
  /** Answers whose price was right. */
  correct: number;
  /** Answers whose price was wrong. */
  wrong: number;
  /** Milliseconds from the start of the run to the first answer of this version. */
  firstMs: number;
  /** Milliseconds from the start of the run to the last answer of this version. */
  lastMs: number;
}

/** What one endpoint did during the run (attempts, not logical requests). */
export interface EndpointCount {
  /** The endpoint as `host:port`. */
  endpoint: string;
  /** Attempts sent to it. */
  attempts: number;
  /** Attempts it answered as active. */
  served: number;
  /** Attempts it answered with STANDBY. */
  standby: number;
  /** Attempts that failed on it. */
  failed: number;
}

/** Why the run ended. */
export type StopReason = "duration" | "requests" | "stopped" | "aborted";

/** Totals of a run (or of the run so far, from `snapshot()`). */
export interface LoadgenSummary {
  /** Endpoints as `host:port`. */
  endpoints: string[];
  /** The strategy used. */
  strategy: Strategy;
  /** Milliseconds from start to the end (or to now, for a snapshot). */
  elapsedMs: number;
  /** Requests finished (served + standby + failed). */
  requests: number;
  /** Requests answered by an active node. */
  served: number;
  /** Served requests whose price was right, over all versions. */
  correct: number;
  /** Served requests whose price was wrong, over all versions. */
  wrong: number;
  /** Served requests by the version tag in the answer (`v1`, `v2`, ...). */
  byVersion: Record<string, VersionCount>;
  /** Requests that got only STANDBY answers. */
  standby: number;
  /** Requests that got no valid answer. */
  failed: number;
  /** Failed requests by the kind of their (last) failure. */
  failures: Record<FailureKind, number>;
  /** Milliseconds from start to the first failed request, or null when none failed. */
  firstFailureMs: number | null;
  /** Milliseconds from start to the last failed request, or null when none failed. */
  lastFailureMs: number | null;
  /** Attempts over all endpoints (more than requests when the failover strategy retried). */
  attempts: number;
  /** Per-endpoint attempt counts. */
  perEndpoint: EndpointCount[];
  /** Requests finished per second of elapsed time. */
  ratePerSec: number;
  /** Why the run ended; null while it runs. */
  stoppedBy: StopReason | null;
}

/** A running load generator. */
export interface LoadgenRun {
  /** The totals so far (a copy). */
  snapshot(): LoadgenSummary;
  /** Stops issuing requests; in-flight ones finish (each within its deadline) and count. */
  stop(): void;
  /** Resolves with the final totals once every worker has finished. Never rejects. */
  readonly done: Promise<LoadgenSummary>;
}

/** Where the demo writes: a stream such as process.stdout. */
export interface DemoStream {
  /** Writes text as is. */
  write(text: string): unknown;
  /** True when it is a terminal (headings are then printed bold). */
  isTTY?: boolean;
}

/** How `hotpatch demo` runs. */
export interface DemoRunOptions {
  /** Print one JSON summary object at the end instead of the live story and the table. */
  json: boolean;
  /** Leave the demo's working folder (bundle, plan, agent configs, logs) in place for inspection. */
  keep: boolean;
  /**
   * Lab mode: NATS without credentials and gRPC without TLS (loopback only). By default the demo
   * runs hardened: mTLS gRPC with roles, NATS over TLS with a least-privilege nkey per identity.
   */
  lab?: boolean;
  /** Aborting it (Ctrl-C) stops everything the demo started; the demo then returns 130. */
  signal: AbortSignal;
  /** Where the story and the summary go (default process.stdout). */
  stdout?: DemoStream;
  /** Where the interruption notice goes (default process.stderr). */
  stderr?: DemoStream;
}
