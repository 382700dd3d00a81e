/**
 * A process keeps running the library it mapped when a package upgrade renames a new build over
 * it, deletes it, or a new file is mounted over its path: the engine reads what is mapped, never
 * the new file at the same path, so a patch lands on the function the process really runs. Without
 * CAP_SYS_ADMIN the mapped file can only be read when the path holds the same build; otherwise
 * resolution stops with a clear error instead of guessing.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { applyPatch, type MappedObject, readElf, readTargetObjects } from "../../native/index.js";
import { compileFixture, type RunningFixture, runTool, startFixture } from "../helpers/fixtures.js";
import { withoutCapabilities } from "../helpers/privileges.js";

const execFileAsync = promisify(execFile);
const nativeIndex = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../native/index.ts");
const soname = "libgreet-swap.so";
const noCapabilities = withoutCapabilities("all");

let oldLib: string;
let newLib: string;
let oldId: string;
let binary: string;
let patch: string;

async function reading(t: RunningFixture): Promise<string> {
  await t.nextLine(/^lib=/); // may predate the last operation
  return t.nextLine(/^lib=/);
}

/** A copy of the first build in a fresh directory, and the fixture running with it. */
async function startWithLib(launcher: string[] = []): Promise<{ dir: string; lib: string; target: RunningFixture }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hotpatch-swap-"));
  const lib = path.join(dir, soname);
  await copyFile(oldLib, lib);
  const [cmd, ...args] = [...launcher, binary];
  const target = await startFixture(cmd ?? binary, args, 10_000, { LD_LIBRARY_PATH: dir });
  return { dir, lib, target };
}

async function mappedLib(pid: number, lib: string): Promise<MappedObject> {
  const found = (await readTargetObjects(pid)).objects.find((o) => o.path === lib);
  assert.ok(found, `${lib} is among the objects of ${pid}`);
  return found;
}

const greet = { id: "greet", functions: [{ symbol: "greet_value", replacement: "greet_value_v2" }] };

before(async () => {
  const flags = ["-O2", "-shared", "-fPIC", `-Wl,-soname,${soname}`];
  oldLib = await compileFixture("c/libgreet.c", flags);
  newLib = await compileFixture("c/libgreet_next.c", flags);
  binary = await compileFixture("c/uses_lib.c", ["-O2", "-fPIE", "-pie", "-Wl,--no-as-needed", oldLib]);
  patch = await compileFixture("c/lib_patch.c", ["-O2", "-shared", "-fPIC"]);
  const [a, b] = await Promise.all([readElf(oldLib), readElf(newLib)]);
  const at = (info: typeof a) => info.symbols.find((s) => s.name === "greet_value" && s.defined)?.value;
  assert.notEqual(at(a), at(b), "the two builds place greet_value differently");
  assert.ok(a.buildId && b.buildId && a.buildId !== b.buildId);
  oldId = a.buildId;
});

const cases: {
  name: string;
  disk: "replaced" | "deleted";
  launcher?: string[];
  change: (lib: string, pid: number) => Promise<void>;
}[] = [
  {
    name: "a library deleted on disk",
    disk: "deleted",
    change: (lib) => rm(lib),
  },
  {
    name: "a library a new build was renamed over",
    disk: "replaced",
    change: async (lib) => {
      await copyFile(newLib, `${lib}.new`);
      await rename(`${lib}.new`, lib);
    },
  },
  {
    name: "a library with a new build mounted over its path in the target's mount namespace",
    disk: "replaced",
    launcher: ["unshare", "--mount", "--propagation", "private"],
    change: async (lib, pid) => {
      await runTool("nsenter", [`--target=${pid}`, "--mount", "mount", "--bind", newLib, lib]);
    },
  },
];

for (const c of cases) {
  describe(c.name, () => {
    let dir: string;
    let lib: string;
    let target: RunningFixture;
    before(async () => {
      ({ dir, lib, target } = await startWithLib(c.launcher));
      await c.change(lib, target.pid);
    });
    after(async () => {
      await target?.kill();
      await rm(dir, { recursive: true, force: true });
    });

    it("the engine reads the mapped build, not the file now at its path", async () => {
      const obj = await mappedLib(target.pid, lib);
      assert.equal(obj.disk, c.disk);
      assert.equal(obj.buildId, oldId);
      assert.equal(obj.unreadable, undefined);
    });

    it("a patch lands on the function the process runs", async () => {
      assert.equal(await reading(target), "lib=11 libc=41");
      await applyPatch(target.pid, { ...greet, soPath: patch });
      assert.equal(await reading(target), "lib=21 libc=41");
    });
  });
}

/** Runs readTargetObjects and applyPatch in a process of root's without any capability. */
async function engineWithoutCapabilities(
  pid: number,
): Promise<{ objects: MappedObject[]; apply: { code?: string; message?: string } }> {
  const script = `
    import { applyPatch, readTargetObjects } from ${JSON.stringify(nativeIndex)};
    const [pid, soPath] = [Number(process.argv[1]), process.argv[2]];
    const { objects } = await readTargetObjects(pid);
    let apply = {};
    try {
      await applyPatch(pid, { ...${JSON.stringify(greet)}, soPath });
    } catch (err) {
      apply = { code: err.code, message: err.message };
    }
    process.stdout.write(JSON.stringify({ objects, apply }, (_, v) => (typeof v === "bigint" ? String(v) : v)));
  `;
  const { stdout } = await execFileAsync(
    noCapabilities[0] ?? "setpriv",
    [
      ...noCapabilities.slice(1),
      process.execPath,
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      script,
      String(pid),
      patch,
    ],
    { cwd: path.dirname(nativeIndex) },
  );
  return JSON.parse(stdout);
}

describe("an engine without CAP_SYS_ADMIN (cannot open /proc/PID/map_files)", () => {
  const started: { dir: string; target: RunningFixture }[] = [];
  after(async () => {
    for (const s of started) {
      await s.target.kill();
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  it("refuses to resolve past a deleted library it cannot read, naming it and what is missing", async () => {
    const s = await startWithLib(noCapabilities);
    started.push(s);
    await rm(s.lib);
    const r = await engineWithoutCapabilities(s.target.pid);
    const obj = r.objects.find((o) => o.path === s.lib);
    assert.equal(obj?.buildId, null);
    assert.match(obj?.unreadable ?? "", /CAP_SYS_ADMIN/);
    assert.equal(r.apply.code, "EELF_OPEN");
    assert.ok(r.apply.message?.includes(s.lib) && r.apply.message.includes("greet_value"), r.apply.message);
    assert.equal(await reading(s.target), "lib=11 libc=41", "the target is left as it was");
  });

  it("reads a replaced library through its path when the file there is the same build", async () => {
    const s = await startWithLib(noCapabilities);
    started.push(s);
    await copyFile(oldLib, `${s.lib}.new`); // a reinstall: same build, new inode
    await rename(`${s.lib}.new`, s.lib);
    const r = await engineWithoutCapabilities(s.target.pid);
    const obj = r.objects.find((o) => o.path === s.lib);
    assert.equal(obj?.buildId, oldId);
    assert.equal(obj?.disk, "same");
    assert.deepEqual(r.apply, {});
    assert.equal(await reading(s.target), "lib=21 libc=41");
  });
});
