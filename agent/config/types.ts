/** The agent's configuration, as validated from YAML. Durations are milliseconds. */

/** Which processes a service or operation is about; every set field must match (AND). */
export interface SelectorConfig {
  /** Executable path, resolved as /proc/PID/exe resolves it. */
  exePath?: string;
  /** GNU build-id of the executable, lowercase hex. */
  buildId?: string;
  /** One process id. */
  pid?: number;
  /** cgroup path; processes in it or below it match. */
  cgroup?: string;
  /** Path of a shared library the process maps. */
  libraryPath?: string;
}

/** TLS files of the gRPC server (PEM). */
export interface TlsFiles {
  /** CA that signs the clients' certificates. */
  ca: string;
  /** The server's certificate. */
  cert: string;
  /** The server's private key. */
  key: string;
}

/** How the gRPC server authenticates clients: mutual TLS, or explicitly none. */
export type GrpcSecurity = { kind: "mtls"; files: TlsFiles } | { kind: "insecure" };

/** The gRPC server. */
export interface GrpcConfig {
  /** host:port to listen on (port 0 picks a free port). */
  listen: string;
  /** mTLS files, or insecure (plaintext, no client identity). */
  security: GrpcSecurity;
  /** Largest bundle upload accepted, bytes. */
  maxBundleBytes: number;
}

/** Limits on bundle uploads (StageBundle). */
export interface UploadsConfig {
  /** Most bytes bundleDir may hold: stored bundles plus the uploads in progress. */
  quotaBytes: number;
  /** Most uploads in progress at once; one more is refused at once (ETOO_MANY_UPLOADS). */
  maxConcurrent: number;
}

/**
 * When audit records are forced to the disk (fdatasync): `always` before the request is answered,
 * `interval` every `fsyncIntervalMs`, `never` when the kernel writes its cache back.
 */
export type AuditFsync = "always" | "interval" | "never";

/** How durable the audit log is. */
export interface AuditConfig {
  fsync: AuditFsync;
  /** With `fsync: interval`: how often written records are synced. */
  fsyncIntervalMs: number;
}

/** Heartbeats and peer watch. */
export interface HeartbeatConfig {
  /** Publish interval. */
  intervalMs: number;
  /** The peer counts as lost after this many intervals without a heartbeat. */
  peerLossBeats: number;
}

/** A command run with a timeout (argv form: no shell unless you write `sh -c`). */
export interface CommandConfig {
  /** Program and arguments. */
  argv: string[];
  /** The command is killed and counts as failed after this long. */
  timeoutMs: number;
}

/** Commands that move the service between active and standby. */
export interface HooksConfig {
  /** Makes the local service active. */
  promote?: CommandConfig;
  /** Makes the local service standby. */
  demote?: CommandConfig;
}

/** The role a node has in its pair. */
export type RoleName = "active" | "standby";

/** Where the node's role comes from. */
export type RoleSource =
  /** Fixed in the configuration (changed only by a switchover request). */
  | { source: "static"; role: RoleName; hooks: HooksConfig }
  /** An existing HA manager: a command's output or a file's content, `active` or `standby`. */
  | {
      source: "external";
      /** Command that prints the role. */
      command?: CommandConfig;
      /** File that holds the role (re-read when it changes). */
      file?: string;
      /** How often the command is run / the file is checked. */
      pollMs: number;
      hooks: HooksConfig;
    }
  /** The pair elects its active node through a JetStream KV lease. */
  | {
      source: "managed";
      /** How long a lease lasts without renewal before the peer may take it. */
      leaseTtlMs: number;
      /** The holder renews this often. */
      renewMs: number;
      /** A holder that could not renew for this long demotes itself; always < leaseTtlMs. */
      demoteAfterMs: number;
      /** JetStream KV bucket that holds the leases. */
      bucket: string;
      hooks: HooksConfig;
    };

/** One probe of a watched service. */
export type ProbeConfig =
  | { name: string; kind: "tcp"; host: string; port: number; timeoutMs: number }
  | { name: string; kind: "http"; url: string; expectStatus: number; timeoutMs: number }
  | { name: string; kind: "exec"; argv: string[]; timeoutMs: number };

/** A scrape of the Prometheus text exposition format (an HTTP endpoint or a command's output). */
interface ScrapeCommon {
  /** The scrape is abandoned (and counts as failed) after this long. */
  timeoutMs: number;
  /** Metric names to keep (sample names, e.g. `http_requests_total`); null keeps every sample. */
  names: string[] | null;
  /** A scrape with more samples than this (after `names`) fails, so heartbeats stay small. */
  maxSamples: number;
}

/** `GET url`, expecting 200 and the text format. */
export interface HttpScrapeConfig extends ScrapeCommon {
  kind: "http";
  /** http:// or https:// URL of the metrics page. */
  url: string;
}

/** A command (argv form, no shell) that prints the text format on stdout and exits 0. */
export interface ExecScrapeConfig extends ScrapeCommon {
  kind: "exec";
  /** Program and arguments. */
  argv: string[];
}

/** A scraped source of service metrics. */
export type ScrapeConfig = HttpScrapeConfig | ExecScrapeConfig;

/** Service metrics carried in heartbeats as `<service>.<metric>`. */
export interface ServiceMetricsConfig {
  /** How often each source is read (each on its own loop; a heartbeat never waits for one). */
  intervalMs: number;
  /** Values from a read older than this are dropped from heartbeats (never republished as fresh). */
  maxAgeMs: number;
  /** Built-in metrics of the service's main process from /proc (`<service>.proc.*`). */
  process: boolean;
  /** Scraped sources: at most one http and one exec. */
  scrapes: ScrapeConfig[];
}

/** A service whose health the heartbeat reports. */
export interface ServiceConfig {
  /** Name in heartbeats. */
  name: string;
  /** Finds the service's main process (the oldest match). */
  process: SelectorConfig;
  /** Extra probes; the process check (alive, same start time) is always done. */
  probes: ProbeConfig[];
  /** Metrics published in heartbeats for rollout gates. */
  metrics: ServiceMetricsConfig;
}

/** The whole agent configuration. */
export interface AgentConfig {
  /** File the configuration was read from ("" when built in code). */
  source: string;
  /** Node name, unique in the cluster. */
  node: string;
  /** Pair the node belongs to. */
  pair: string;
  /** Cluster name. */
  cluster: string;
  grpc: GrpcConfig;
  /** NATS server URLs. */
  natsServers: string[];
  heartbeat: HeartbeatConfig;
  role: RoleSource;
  services: ServiceConfig[];
  /** Executables and libraries (absolute paths, or directories ending in `/`) that may be patched. */
  allow: string[];
  /** Where verified bundles are stored. */
  bundleDir: string;
  /** Limits on uploads into bundleDir. */
  uploads: UploadsConfig;
  /** Public keys (PEM files) whose bundle signatures are trusted; when any are given, unsigned bundles are refused. */
  trustedKeys: string[];
  /** Append-only JSON-lines audit log. */
  auditLog: string;
  /** How durable the audit log is. */
  audit: AuditConfig;
  /** host:port of the Prometheus endpoint, or null for none. */
  metricsListen: string | null;
  /** Directories searched for separate debug info. */
  debugDirs: string[];
  /** Per-process deadline of the engine's safety check when a request gives none. */
  safetyTimeoutMs: number;
  /** pino log level. */
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
}
