/**
 * The agent's container image, built locally FROM scratch (no registry): it starts, loads the
 * native addon, and runs the CLI. Skipped, saying why, only when no Docker engine can be started.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

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
});
