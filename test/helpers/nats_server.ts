/**
 * A real nats-server with JetStream on a free port and a temporary store dir, restartable on the
 * same port; optionally run from a config file (the hardened one, see secure_nats.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/** A free TCP port on 127.0.0.1 (bound and released). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export interface NatsServer {
  port: number;
  url: string;
  storeDir: string;
  /** Kills the server (SIGKILL) and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port with the same store dir. */
  start(): Promise<void>;
  /** Kills it and removes the store dir. */
  close(): Promise<void>;
}

/**
 * Starts a nats-server on `port`, or on a free one: a port found free can be taken by another
 * process before the server binds it, and then another is tried.
 */
export async function startNatsServer(port?: number, configFile?: string): Promise<NatsServer> {
  if (port !== undefined) return startOn(port, configFile);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOn(await freePort(), configFile);
    } catch (err) {
      if (attempt >= 5 || !/address already in use/i.test(String((err as Error).message))) throw err;
    }
  }
}

async function startOn(port: number, configFile?: string): Promise<NatsServer> {
  const storeDir = await mkdtemp(path.join(tmpdir(), "hotpatch-nats-"));
  let child: ChildProcess | null = null;
  // A config file brings its own JetStream store; the flags only pin the address.
  const where = ["-a", "127.0.0.1", "-p", String(port)];
  const args = configFile ? ["-c", configFile, ...where] : [...where, "-js", "-sd", storeDir];
  const start = async () => {
    const c = spawn("/usr/sbin/nats-server", args, {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child = c;
    await new Promise<void>((resolve, reject) => {
      let seen = "";
      const timer = setTimeout(() => reject(new Error(`nats-server did not start: ${seen}`)), 10_000);
      c.stderr?.on("data", (d: Buffer) => {
        seen += d.toString();
        if (seen.includes("Server is ready")) {
          clearTimeout(timer);
          resolve();
        }
      });
      c.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}: ${seen}`));
      });
    });
  };
  const kill = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await exited;
  };
  await start().catch(async (err) => {
    await rm(storeDir, { recursive: true, force: true });
    throw err;
  });
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    storeDir,
    kill,
    start,
    async close() {
      await kill();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
