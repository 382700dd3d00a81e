/** Builds and starts the demo service (deploy/demo/service/quote_service.c) as a child process. */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { DemoOptionError, DemoServiceError } from "./errors.js";
import type { Endpoint } from "./types.js";

const execFileAsync = promisify(execFile);

// The C sources stay in deploy/demo whether this file runs from source or from dist/deploy/demo.
function demoDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dist = path.basename(path.resolve(here, "../..")) === "dist";
  return dist ? path.resolve(here, "../../../deploy/demo") : here;
}

/** Source of the demo service. */
export const DEMO_SERVICE_SOURCE = path.join(demoDir(), "service/quote_service.c");
/** Source of its fix: the patch that `hotpatch build` turns into a bundle. */
export const DEMO_FIX_SOURCE = path.join(demoDir(), "fix/fix_price.c");
/** Compiler flags of the demo service: symbols kept (-g, not stripped), PIE, CET landing pads. */
export const DEMO_SERVICE_CFLAGS: readonly string[] = [
  "-g",
  "-O2",
  "-fPIE",
  "-pie",
  "-fcf-protection",
  "-pthread",
  "-Wall",
  "-Wextra",
];

/** Compiles the demo service to `outPath` with DEMO_SERVICE_CFLAGS; returns `outPath`. */
export async function buildDemoService(outPath: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const tmp = `${outPath}.tmp${process.pid}`;
  try {
    await execFileAsync("gcc", [...DEMO_SERVICE_CFLAGS, "-o", tmp, DEMO_SERVICE_SOURCE], {
      signal: options.signal,
    });
  } catch (err) {
    const output = String((err as { stderr?: unknown }).stderr ?? "").slice(-2000);
    throw new DemoServiceError(
      "EBUILD_FAILED",
      `gcc could not build the demo service: ${output || String(err)}`,
      {
        path: DEMO_SERVICE_SOURCE,
        output,
      },
      { cause: err },
    );
  }
  await rename(tmp, outPath);
  return outPath;
}

/** How to start one demo service instance. */
export interface DemoServiceOptions {
  /** The compiled service (from buildDemoService). */
  binary: string;
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** Fixed starting role; exclusive with roleFile. Default active. */
  role?: "active" | "standby";
  /** File holding `active` or `standby`, re-read when it changes; exclusive with role. */
  roleFile?: string;
  /** Worker threads (4..64). Default 4. */
  threads?: number;
  /** File the service writes its pid to (for hooks such as `kill -USR1 $(cat FILE)`). */
  pidFile?: string;
  /** How long to wait for the `ready` line. Default 10 s. */
  readyTimeoutMs?: number;
}

/** A running demo service instance. */
export interface DemoService {
  /** Its process id. */
  readonly pid: number;
  /** Where it listens. */
  readonly endpoint: Endpoint;
  /** The child process. */
  readonly child: ChildProcess;
  /** Everything it printed on stdout so far (ready line, role changes). */
  output(): string;
  /** Sends SIGUSR1: become active. */
  promote(): void;
  /** Sends SIGUSR2: become standby. */
  demote(): void;
  /** Sends SIGHUP: re-read the role file now. */
  reloadRoleFile(): void;
  /** SIGTERM, then SIGKILL after 2 s; resolves once it has exited. */
  stop(): Promise<void>;
  /** SIGKILL (a crash, as a failover drill wants it); resolves once it has exited. */
  kill(): Promise<void>;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Starts the demo service and resolves once it printed `ready <pid> port <port>`. */
export async function startDemoService(options: DemoServiceOptions): Promise<DemoService> {
  if (options.role !== undefined && options.roleFile !== undefined) {
    throw new DemoOptionError("EBAD_ARGUMENT", "give role or roleFile, not both", { option: "role" });
  }
  const args = ["--port", String(options.port ?? 0), "--threads", String(options.threads ?? 4)];
  if (options.roleFile !== undefined) args.push("--role-file", options.roleFile);
  else args.push("--role", options.role ?? "active");
  if (options.pidFile !== undefined) args.push("--pid-file", options.pidFile);
  const child = spawn(options.binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    err += c.toString();
  });
  const timeoutMs = options.readyTimeoutMs ?? 10_000;
  const ready = await new Promise<{ pid: number; port: number }>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      if (!exited(child)) child.kill("SIGKILL");
      reject(
        new DemoServiceError("ESERVICE_START", `demo service ${why}: ${err.trim() || "(no output)"}`, {
          path: options.binary,
          output: (out + err).slice(-2000),
        }),
      );
    };
    const timer = setTimeout(() => fail(`printed no ready line within ${timeoutMs} ms`), timeoutMs);
    const onData = () => {
      const m = /ready (\d+) port (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        child.off("exit", onExit);
        child.off("error", onError);
        resolve({ pid: Number(m[1]), port: Number(m[2]) });
      }
    };
    const onExit = (code: number | null, signal: string | null) =>
      fail(`exited (${signal ?? code}) before it was ready`);
    const onError = (e: Error) => fail(`could not be started (${e.message})`);
    child.stdout?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    if (exited(child)) return;
    const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    if (signal !== "SIGKILL") {
      const t = setTimeout(() => child.kill("SIGKILL"), 2000);
      await gone;
      clearTimeout(t);
    } else {
      await gone;
    }
  };
  return {
    pid: ready.pid,
    endpoint: { host: "127.0.0.1", port: ready.port },
    child,
    output: () => out,
    promote: () => child.kill("SIGUSR1"),
    demote: () => child.kill("SIGUSR2"),
    reloadRoleFile: () => child.kill("SIGHUP"),
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
  };
}

/** Writes a role file atomically (temp file + rename), so the service never reads half of it. */
export async function writeRoleFile(roleFile: string, role: "active" | "standby"): Promise<void> {
  const tmp = `${roleFile}.tmp${process.pid}`;
  await writeFile(tmp, `${role}\n`);
  await rename(tmp, roleFile);
}

/**
 * What the role-file hook runs (bash, for its /dev/tcp): rewrites the role file atomically (the
 * service sees the rename through inotify), then, given the service's port, asks `HEALTH` until
 * the service reports the role, so that the hook ends only once the service has really switched.
 * A demotion also counts as done when nothing listens (a service that is down serves nobody, and
 * it starts as standby from its role file). The agent's hook timeout bounds the wait.
 */
const ROLE_FILE_HOOK = `
f=$1 role=$2 port=$3 tmp="$1.tmp.$$"
printf '%s\n' "$role" >"$tmp" && mv -f "$tmp" "$f" || exit 1
[ -n "$port" ] || exit 0
while :; do
  if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    ok= got=
    { printf 'HEALTH\n' >&3 && read -r -t 2 ok got _ <&3; } 2>/dev/null
    exec 3<&-
    [ "$ok $got" = "OK $role" ] && exit 0
  elif [ "$role" = standby ]; then
    exit 0
  fi
  sleep 0.005
done`;

/**
 * A promote or demote hook for an agent's configuration (argv form): it rewrites the service's
 * role file atomically, and, given `servicePort`, returns only once the service on 127.0.0.1 at
 * that port answers `HEALTH` in the new role (without it, the service follows at once but the hook
 * does not wait for it).
 */
export function roleFileHook(
  roleFile: string,
  role: "active" | "standby",
  options: { servicePort?: number } = {},
): string[] {
  return ["/bin/bash", "-c", ROLE_FILE_HOOK, "role-file-hook", roleFile, role, String(options.servicePort ?? "")];
}
