/** The agent's systemd unit: systemd accepts it, and it grants exactly the capabilities it explains. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const unitPath = path.join(root, "deploy/systemd/hotpatch-agent.service");
const unitText = readFileSync(unitPath, "utf8");
const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) => existsSync(p));

/** The unit's [Service] settings: key -> every value given (comments and other sections left out). */
function serviceSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1] ?? "";
      continue;
    }
    const eq = line.indexOf("=");
    if (section !== "Service" || eq < 0) continue;
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}

describe("systemd unit of the agent", () => {
  const settings = serviceSettings(unitText);
  const one = (key: string) => settings.get(key)?.at(-1);

  it("runs `hotpatch agent --config /etc/hotpatch/agent.yaml` as its own user", () => {
    assert.match(one("ExecStart") ?? "", /^\/\S*\/hotpatch agent --config \/etc\/hotpatch\/agent\.yaml$/);
    assert.equal(one("User"), "hotpatch");
    assert.match(readFileSync(path.join(root, "deploy/systemd/hotpatch.sysusers.conf"), "utf8"), /^u hotpatch /m);
  });

  it("signals only the agent, so that a crashed agent's dead man's switch can still demote its service", () => {
    assert.equal(one("KillMode"), "process");
    assert.equal(one("Restart"), "on-failure");
  });

  it("grants exactly CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH and CAP_NET_ADMIN, each explained", () => {
    const caps = ["CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"];
    for (const key of ["AmbientCapabilities", "CapabilityBoundingSet"]) {
      assert.deepEqual((one(key) ?? "").split(/\s+/).sort(), caps, key);
    }
    for (const cap of caps) assert.match(unitText, new RegExp(`^#\\s+${cap}\\s+\\S`, "m"), `${cap} has a comment`);
    assert.match(unitText, /cn_proc/, "CAP_NET_ADMIN is tied to the process-event connector");
  });

  it("is hardened without the settings that would break ptrace and /proc access", () => {
    const expected: Record<string, string> = {
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ProtectHome: "read-only",
      PrivateTmp: "yes",
      ProtectKernelModules: "yes",
      ProtectKernelTunables: "yes",
      RestrictSUIDSGID: "yes",
      SystemCallArchitectures: "native",
    };
    for (const [key, value] of Object.entries(expected)) assert.equal(one(key), value, key);
    assert.match(one("SystemCallFilter") ?? "", /@debug/, "ptrace is in @debug");
    assert.match(one("RestrictAddressFamilies") ?? "", /AF_NETLINK/);
    for (const key of ["ProtectProc", "ProcSubset", "PrivateUsers", "MemoryDenyWriteExecute", "PrivateNetwork"]) {
      assert.equal(settings.has(key), false, `${key} must stay unset`);
    }
  });

  describe("systemd-analyze", { skip: analyze ? false : "systemd-analyze is not installed" }, () => {
    let dir: string;
    let fakeBin: string;
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), "hotpatch-unit-"));
      // verify checks that ExecStart's program exists; the real one is installed by the package.
      fakeBin = path.join(dir, "hotpatch");
      await writeFile(fakeBin, "#!/bin/sh\n");
      await chmod(fakeBin, 0o755);
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    async function verify(text: string): Promise<string> {
      const file = path.join(dir, "hotpatch-agent.service");
      await writeFile(file, text.replaceAll("/usr/local/bin/hotpatch", fakeBin));
      const r = await execFileAsync(analyze as string, ["verify", file]).catch((e: { stderr: string }) => e);
      return r.stderr.trim();
    }

    it("verifies the unit with no warning", async () => {
      assert.equal(await verify(unitText), "");
    });

    it("would report a misspelled or invalid setting (so the check above can fail)", async () => {
      assert.match(
        await verify(unitText.replace("ProtectSystem=strict", "ProtectSystem=sometimes")),
        /protect system/i,
      );
    });
  });
});
