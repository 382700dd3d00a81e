/**
 * The container suite's images, built locally with no registry and cached by content: each tag
 * carries a hash of everything that goes into the image, so an unchanged tree reuses the image and
 * a rebuilt project gets a new one. Three images:
 *   hotpatch-nats:ct-<hash>    FROM scratch: this machine's nats-server and the libraries ldd lists
 *   hotpatch-agent:ct-<hash>   deploy/container/build-image.sh (node, the built project, /bin/sh)
 *   hotpatch-node:ct-<hash>    the agent image plus the demo quote service and the node's init
 * Builds use the docker CLI (testcontainers would try to pull the FROM images); everything that
 * runs uses testcontainers.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const nodeImageDir = path.join(root, "test/cluster/node-image");

/** Why no Docker engine can be used here, or null when one runs (started if need be, as root). */
export async function whyNoDocker(): Promise<string | null> {
  const runs = () =>
    execFileAsync("docker", ["info"], { timeout: 30_000 }).then(
      () => true,
      () => false,
    );
  if (await runs()) return null;
  if (process.getuid?.() !== 0) return "no Docker engine runs, and only root may start one (scripts/setup.sh docker)";
  const failed = await execFileAsync("bash", [path.join(root, "scripts/setup.sh"), "docker"], {
    cwd: root,
    timeout: 240_000,
  }).then(
    () => null,
    (err: { stderr?: string }) =>
      String(err.stderr ?? err)
        .trim()
        .split("\n")
        .at(-1) ?? "unknown failure",
  );
  if (failed !== null) return `the Docker engine could not be started: ${failed}`;
  return (await runs()) ? null : "the Docker engine did not answer after scripts/setup.sh docker";
}

async function filesUnder(dir: string): Promise<string[]> {
  const names = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
  return names.sort();
}

/** sha256 over the names and contents of `files`, first 16 hex digits. */
async function hashFiles(files: string[], extra = ""): Promise<string> {
  const h = createHash("sha256").update(extra);
  for (const f of files) {
    h.update(`\0${path.relative(root, f)}\0`);
    h.update(await readFile(f));
  }
  return h.digest("hex").slice(0, 16);
}

/** Tags built (not reused) by this process, for the suite's figures. */
export const builtImages: string[] = [];

async function imageExists(tag: string): Promise<boolean> {
  return execFileAsync("docker", ["image", "inspect", tag], { timeout: 60_000 }).then(
    () => true,
    () => false,
  );
}

/** Removes the other ct- tags of `repo`, so rebuilt images do not pile up. */
async function pruneOthers(repo: string, keep: string): Promise<void> {
  const { stdout } = await execFileAsync("docker", ["images", repo, "--format", "{{.Repository}}:{{.Tag}}"]);
  const old = stdout
    .split("\n")
    .filter((t) => t.startsWith(`${repo}:ct-`) && t !== keep)
    .filter(Boolean);
  if (old.length > 0) await execFileAsync("docker", ["rmi", "-f", ...old]).catch(() => undefined);
}

async function dockerBuild(tag: string, context: string, args: string[] = []): Promise<void> {
  builtImages.push(tag);
  await execFileAsync("docker", ["build", "--tag", tag, ...args, context], {
    timeout: 600_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** Copies `bin` and the shared libraries ldd lists for it into `rootfs`, at the same paths. */
async function copyWithLibraries(bin: string, rootfs: string, at: string): Promise<void> {
  await mkdir(path.join(rootfs, path.dirname(at)), { recursive: true });
  await copyFile(bin, path.join(rootfs, at));
  const { stdout } = await execFileAsync("ldd", [bin]);
  const libs = [...stdout.matchAll(/(?:=> )?(\/\S+) \(0x/g)].map((m) => m[1] as string);
  for (const lib of libs) {
    await mkdir(path.join(rootfs, path.dirname(lib)), { recursive: true });
    await copyFile(await realpath(lib), path.join(rootfs, lib));
  }
}

/** The NATS server image. */
export async function natsImage(): Promise<string> {
  const bin = await realpath("/usr/sbin/nats-server");
  const tag = `hotpatch-nats:ct-${await hashFiles([bin], "nats-1")}`;
  if (await imageExists(tag)) return tag;
  const ctx = await mkdtemp(path.join(tmpdir(), "hotpatch-nats-image-"));
  try {
    await copyWithLibraries(bin, path.join(ctx, "rootfs"), "/nats-server");
    await mkdir(path.join(ctx, "rootfs/data"));
    await writeFile(path.join(ctx, "Dockerfile"), 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/nats-server"]\n');
    await dockerBuild(tag, ctx);
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
  await pruneOthers("hotpatch-nats", tag);
  return tag;
}

/** The agent image, as deploy/container builds it, for the project as built now. */
export async function agentImage(): Promise<string> {
  const native = (await readdir(path.join(root, "native/build/Release")))
    .filter((f) => f.endsWith(".node"))
    .map((f) => path.join(root, "native/build/Release", f));
  const inputs = [
    await realpath(process.execPath),
    ...(await filesUnder(path.join(root, "dist"))),
    ...(await filesUnder(path.join(root, "bin"))),
    ...(await filesUnder(path.join(root, "deploy/container"))),
    ...native,
    path.join(root, "package.json"),
    path.join(root, "package-lock.json"),
  ];
  const tag = `hotpatch-agent:ct-${await hashFiles(inputs)}`;
  if (await imageExists(tag)) return tag;
  builtImages.push(tag);
  await execFileAsync(path.join(root, "deploy/container/build-image.sh"), [tag], {
    timeout: 600_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  await pruneOthers("hotpatch-agent", tag);
  return tag;
}

/** A node: the agent image plus the quote service binary `service` (the one bundles are built for). */
export async function nodeImage(agentTag: string, service: string): Promise<string> {
  const files = [service, ...(await filesUnder(nodeImageDir))];
  const tag = `hotpatch-node:ct-${await hashFiles(files, agentTag)}`;
  if (await imageExists(tag)) return tag;
  const ctx = await mkdtemp(path.join(tmpdir(), "hotpatch-node-image-"));
  try {
    await cp(nodeImageDir, ctx, { recursive: true });
    await copyFile(service, path.join(ctx, "quote_service"));
    await dockerBuild(tag, ctx, ["--build-arg", `AGENT_IMAGE=${agentTag}`]);
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
  await pruneOthers("hotpatch-node", tag);
  return tag;
}
