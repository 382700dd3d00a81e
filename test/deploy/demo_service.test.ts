/** The demo service as its clients and an agent's hooks see it: answers, threads, roles, bad input. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import {
  correctPrice,
  type DemoService,
  type Endpoint,
  roleFileHook,
  sendLine,
  startDemoService,
  writeRoleFile,
} from "../../deploy/demo/index.js";
import { buildV1, waitFor } from "./demo_helpers.js";

const execFileAsync = promisify(execFile);

async function ask(endpoint: Endpoint, line: string): Promise<string> {
  const r = await sendLine(endpoint, line, { timeoutMs: 2000 });
  assert.equal(r.kind, "answer", JSON.stringify(r));
  return r.kind === "answer" ? r.line : "";
}

/** Runs the binary with bad arguments and returns its exit code and stderr. */
async function runExpectingFailure(binary: string, args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await execFileAsync(binary, args, { timeout: 30_000 });
    return { code: 0, stderr: "" };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: e.stderr ?? "" };
  }
}

describe("demo service", () => {
  let dir: string;
  let binary: string;
  const running: DemoService[] = [];
  const start = async (opts: Parameters<typeof startDemoService>[0]) => {
    const s = await startDemoService(opts);
    running.push(s);
    return s;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "hotpatch-demo-"));
    binary = await buildV1(dir);
  });
  after(async () => {
    await Promise.all(running.map((s) => s.kill()));
    await rm(dir, { recursive: true, force: true });
  });

  it("is a PIE with symbols for compute_price and service_version", async () => {
    const header = await execFileAsync("readelf", ["-h", binary]);
    assert.match(header.stdout, /Type:\s+DYN/);
    const syms = await execFileAsync("nm", [binary]);
    assert.match(syms.stdout, / T compute_price$/m);
    assert.match(syms.stdout, / T service_version$/m);
  });

  it("answers concurrent clients with the v1 price, which charges one unit too many", async () => {
    const s = await start({ binary, threads: 4 });
    const quantities = Array.from({ length: 40 }, (_, i) => i * 37);
    const answers = await Promise.all(quantities.map((n) => ask(s.endpoint, `QUOTE ${n}`)));
    answers.forEach((a, i) => {
      const n = quantities[i] ?? 0;
      assert.equal(a, `v1 ${correctPrice(n + 1)}`);
      assert.notEqual(a, `v1 ${correctPrice(n)}`);
    });
  });

  it("serves four held-open connections at once from its worker pool", async () => {
    const s = await start({ binary, threads: 4 });
    const tasks = await readdir(`/proc/${s.pid}/task`);
    assert.ok(tasks.length >= 6, `main + 4 workers + signal thread, saw ${tasks.length} threads`);
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const sock = connect(s.endpoint);
        sockets.push(sock);
        await new Promise<void>((resolve, reject) => sock.once("connect", resolve).once("error", reject));
      }
      // Every connection stays open while the others are asked: each must have its own worker.
      const replies = await Promise.all(
        sockets.map(
          (sock, i) =>
            new Promise<string>((resolve, reject) => {
              sock.once("data", (d: Buffer) => resolve(d.toString()));
              sock.once("error", reject);
              sock.write(`QUOTE ${i}\n`);
            }),
        ),
      );
      assert.deepEqual(
        replies,
        [0, 1, 2, 3].map((i) => `v1 ${correctPrice(i + 1)}\n`),
      );
    } finally {
      for (const sock of sockets) sock.destroy();
    }
  });

  it("answers HEALTH with its role and version, and ERR for bad requests without dropping the line", async () => {
    const s = await start({ binary });
    assert.equal(await ask(s.endpoint, "HEALTH"), "OK active v1");
    assert.match(await ask(s.endpoint, "QUOTE -1"), /^ERR quantity must be an integer from 0 to 1000000$/);
    assert.match(await ask(s.endpoint, "QUOTE 12abc"), /^ERR quantity/);
    assert.match(await ask(s.endpoint, "QUOTE 1000001"), /^ERR quantity/);
    assert.match(await ask(s.endpoint, "HELLO"), /^ERR unknown request/);
    assert.match(await ask(s.endpoint, "x".repeat(200)), /^ERR line too long$/);
  });

  it("as standby answers STANDBY, and SIGUSR1/SIGUSR2 promote and demote it", async () => {
    const s = await start({ binary, role: "standby" });
    assert.equal(await ask(s.endpoint, "QUOTE 3"), "STANDBY");
    assert.equal(await ask(s.endpoint, "HEALTH"), "OK standby v1");
    s.promote();
    await waitFor("promotion", async () => (await ask(s.endpoint, "HEALTH")) === "OK active v1");
    assert.equal(await ask(s.endpoint, "QUOTE 3"), `v1 ${correctPrice(4)}`);
    s.demote();
    await waitFor("demotion", async () => (await ask(s.endpoint, "HEALTH")) === "OK standby v1");
    assert.equal(await ask(s.endpoint, "QUOTE 3"), "STANDBY");
    // The service switches its role, then logs it: the line may reach this process after the answer.
    const log = /role standby -> active \(SIGUSR1\)\nrole active -> standby \(SIGUSR2\)/;
    await waitFor("both role changes in the service's log", async () => log.test(s.output()));
  });

  it("follows its role file when its content changes (watched with inotify and checked every 100 ms, or on SIGHUP)", async () => {
    const roleFile = path.join(dir, "role");
    await writeFile(roleFile, "standby\n");
    const s = await start({ binary, roleFile });
    assert.equal(await ask(s.endpoint, "HEALTH"), "OK standby v1");
    await writeFile(roleFile, "active\n");
    await waitFor("role file promotion", async () => (await ask(s.endpoint, "HEALTH")) === "OK active v1");
    await writeFile(roleFile, "standby\n");
    s.reloadRoleFile();
    await waitFor("role file demotion", async () => (await ask(s.endpoint, "HEALTH")) === "OK standby v1");
    await writeFile(roleFile, "primary\n");
    await waitFor("complaint", async () => /does not hold 'active' or 'standby'; role stays standby/.test(s.output()));
    assert.equal(await ask(s.endpoint, "HEALTH"), "OK standby v1");
  });

  it("moves between roles when an agent runs the role-file hooks", async () => {
    const roleFile = path.join(dir, "hook-role");
    await writeRoleFile(roleFile, "standby");
    const s = await start({ binary, roleFile });
    const [cmd, ...args] = roleFileHook(roleFile, "active");
    await execFileAsync(cmd as string, args);
    await waitFor("hook promotion", async () => (await ask(s.endpoint, "HEALTH")) === "OK active v1");
    const [cmd2, ...args2] = roleFileHook(roleFile, "standby");
    await execFileAsync(cmd2 as string, args2);
    await waitFor("hook demotion", async () => (await ask(s.endpoint, "HEALTH")) === "OK standby v1");
    assert.doesNotMatch(s.output(), /does not hold/, "the service never saw a half-written file");
  });

  it("the role-file hook given the service's port returns only once the service answers in the new role", async () => {
    const roleFile = path.join(dir, "confirm-role");
    await writeRoleFile(roleFile, "standby");
    const s = await start({ binary, roleFile });
    for (const role of ["active", "standby", "active"] as const) {
      const [cmd, ...args] = roleFileHook(roleFile, role, { servicePort: s.endpoint.port });
      await execFileAsync(cmd as string, args, { timeout: 10_000 });
      assert.equal(await ask(s.endpoint, "HEALTH"), `OK ${role} v1`);
    }
  });

  it("with no service listening, the demote hook succeeds (nothing serves) and the promote hook keeps waiting until killed", async () => {
    const roleFile = path.join(dir, "nobody-role");
    await writeRoleFile(roleFile, "active");
    const s = await start({ binary, roleFile });
    const port = s.endpoint.port;
    await s.stop();
    const [cmd, ...args] = roleFileHook(roleFile, "standby", { servicePort: port });
    await execFileAsync(cmd as string, args, { timeout: 10_000 });
    const [pcmd, ...pargs] = roleFileHook(roleFile, "active", { servicePort: port });
    await assert.rejects(
      execFileAsync(pcmd as string, pargs, { timeout: 500, killSignal: "SIGKILL" }),
      (e: { killed?: boolean }) => e.killed === true,
    );
  });

  it("writes its pid file and removes it when stopped with SIGTERM", async () => {
    const pidFile = path.join(dir, "svc.pid");
    const s = await start({ binary, pidFile });
    assert.ok(existsSync(pidFile));
    const exit = new Promise<number | null>((resolve) => s.child.once("exit", (code) => resolve(code)));
    await s.stop();
    assert.equal(await exit, 0);
    assert.equal(existsSync(pidFile), false);
  });

  it("refuses bad command lines with exit code 2 and says why", async () => {
    const cases: [string[], RegExp][] = [
      [["--role", "active"], /--port is required/],
      [["--port", "0", "--bind", "0.0.0.0"], /loopback/],
      [["--port", "0", "--threads", "2"], /--threads must be an integer from 4 to 64/],
      [["--port", "70000"], /--port must be an integer from 0 to 65535/],
      [["--port", "0", "--role", "leader"], /--role must be 'active' or 'standby'/],
      [["--port", "0", "--role-file", path.join(dir, "missing")], /role file must exist/],
      [["--port", "0", "--role", "active", "--role-file", "x"], /not both/],
      [["--port", "0", "--frobnicate", "1"], /unknown option/],
    ];
    for (const [args, message] of cases) {
      const r = await runExpectingFailure(binary, args);
      assert.equal(r.code, 2, `${args.join(" ")} should exit 2`);
      assert.match(r.stderr, message);
    }
  });
});
