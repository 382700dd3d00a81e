/** The hotpatch version, from the package.json that ships with this code (source or dist/ alike). */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

function findPackageJson(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "package.json");
    try {
      const pkg = JSON.parse(readFileSync(candidate, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "hotpatch" && pkg.version) return pkg.version;
    } catch {
      // not here: keep walking up
    }
    if (path.dirname(dir) === dir) return "0.0.0-unknown";
  }
}

export const version = findPackageJson(path.dirname(fileURLToPath(import.meta.url)));
