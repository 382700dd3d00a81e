/**
 * The agent's container image, built locally FROM scratch (no registry): it starts, loads the
 * native addon, and runs the CLI. Skipped, saying why, only when no Docker engine can be started.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { buildV1 } from "./demo_helpers.js";

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tag = `hotpatch-agent:test-${process.pid}`;

async function dockerRuns(): Promise<boolean> {
  return execFileAsync("docker", ["info"], { timeout: 20_000 }).then(
    () => true,
    () => false,
  );
}

/** Why the image cannot be tested here, or null when a Docker engine runs (started if need be). */
async function whyNoDocker(): Promise<string | null> {
  if (await dockerRuns()) return null;
  if (process.getuid?.() !== 0) return "no Docker engine runs, and only root may start one (scripts/setup.sh docker)";
  const started = await execFileAsync("bash", [path.join(root, "scripts/setup.sh"), "docker"], {
    cwd: root,
    timeout: 180_000,
  }).then(
    () => null,
    (err: { stderr?: string }) =>
      String(err.stderr ?? err)
        .trim()
        .split("\n")
        .at(-1) ?? "unknown failure",
  );
  if (started !== null) return `the Docker engine could not be started: ${started}`;
  return (await dockerRuns()) ? null : "the Docker engine did not answer after scripts/setup.sh docker";
}

const noDocker = await whyNoDocker();

/** The agent container's capabilities as the DaemonSet grants them. */
function daemonSetCapabilities(): string[] {
  const docs = parseAllDocuments(readFileSync(path.join(root, "deploy/k8s/daemonset.yaml"), "utf8"));
  const ds = docs.map((d) => d.toJS()).find((d) => d.kind === "DaemonSet");
  return ds.spec.template.spec.containers[0].securityContext.capabilities.add as string[];
}

/** Runs `hotpatch elf FILE` in the image with the given docker options; resolves with exit code and output. */
async function elfInImage(dockerArgs: string[], file: string): Promise<{ code: number; out: string }> {
  const args = ["run", "--rm", ...dockerArgs, tag, "elf", file, "--symbols", "compute_price"];
  return execFileAsync("docker", args, { timeout: 60_000 }).then(
    (r) => ({ code: 0, out: r.stdout }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
}

describe("agent container image", { skip: noDocker ?? false }, () => {
  after(async () => {
    await execFileAsync("docker", ["rmi", "-f", tag]).catch(() => undefined);
  });

  it("builds from deploy/container without pulling anything", async () => {
    const { stdout } = await execFileAsync(path.join(root, "deploy/container/build-image.sh"), [tag], {
      timeout: 300_000,
    });
    assert.equal(stdout.trim(), tag);
    const inspect = await execFileAsync("docker", ["image", "inspect", tag, "--format", "{{json .Config.Entrypoint}}"]);
    assert.deepEqual(JSON.parse(inspect.stdout), ["/usr/local/bin/node", "/opt/hotpatch/bin/hotpatch.js"]);
  });

  it("runs `hotpatch --help`", async () => {
    const { stdout } = await execFileAsync("docker", ["run", "--rm", tag, "--help"], { timeout: 60_000 });
    assert.match(stdout, /^Usage: hotpatch /);
  });

  it("loads the native addon inside the image (hotpatch elf reads the image's own node)", async () => {
    const { stdout } = await execFileAsync("docker", ["run", "--rm", tag, "elf", "/usr/local/bin/node", "--json"], {
      timeout: 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const inImage = JSON.parse(stdout) as { buildId: string };
    const host = await execFileAsync("readelf", ["-n", process.execPath]);
    assert.ok(host.stdout.includes(inImage.buildId), "the image carries this machine's node");
  });

  it("with the DaemonSet's hostPID and capabilities reads a host process of another user, and not without", async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip("starting the target as another user needs root");
      return;
    }
    const dir = await mkdtemp(path.join(tmpdir(), "hotpatch-image-"));
    await chmod(dir, 0o755);
    const binary = await buildV1(dir);
    const target = spawn(binary, ["--port", "0"], { uid: 65534, gid: 65534, stdio: ["ignore", "pipe", "inherit"] });
    try {
      const pid = await new Promise<number>((resolve, reject) => {
        target.stdout?.on("data", (d: Buffer) => {
          const m = /ready (\d+)/.exec(d.toString());
          if (m) resolve(Number(m[1]));
        });
        target.once("exit", (code) => reject(new Error(`demo service exited (${code})`)));
      });
      const caps = daemonSetCapabilities().flatMap((c) => ["--cap-add", c]);
      // As the DaemonSet runs it: host PID namespace, all capabilities dropped but its own, no AppArmor confinement.
      const asDeployed = ["--pid", "host", "--cap-drop", "ALL", ...caps, "--security-opt", "apparmor=unconfined"];
      const ok = await elfInImage(asDeployed, `/proc/${pid}/exe`);
      assert.equal(ok.code, 0, ok.out);
      assert.match(ok.out, /function global symtab compute_price/);
      const noCaps = await elfInImage(
        ["--pid", "host", "--cap-drop", "ALL", "--security-opt", "apparmor=unconfined"],
        `/proc/${pid}/exe`,
      );
      assert.equal(noCaps.code, 1);
      assert.match(noCaps.out, /\[EELF_OPEN\].*Permission denied/);
      const noHostPid = await elfInImage(["--cap-drop", "ALL", ...caps], `/proc/${pid}/exe`);
      assert.equal(noHostPid.code, 1);
      assert.match(noHostPid.out, /\[EELF_OPEN\]/);
    } finally {
      target.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });
});
