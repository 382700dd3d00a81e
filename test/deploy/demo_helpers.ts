/** Builds the demo service (and, for tests, a copy linked with the fix) into a temp directory. */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import {
  buildDemoService,
  DEMO_FIX_SOURCE,
  DEMO_SERVICE_CFLAGS,
  DEMO_SERVICE_SOURCE,
} from "../../deploy/demo/index.js";

const execFileAsync = promisify(execFile);

/** The demo service as users get it (v1, buggy). */
export function buildV1(dir: string): Promise<string> {
  return buildDemoService(path.join(dir, "quote_service"));
}

/**
 * The demo service with fix_price.c linked in at build time: the service's own compute_price and
 * service_version are made weak, so the fix's definitions win. It answers as the live-patched
 * service should, which lets the load generator be checked against real v2 answers.
 */
export async function buildLinkedFix(dir: string): Promise<string> {
  const svc = path.join(dir, "svc.o");
  const fix = path.join(dir, "fix.o");
  const out = path.join(dir, "quote_service_fixed");
  const compileFlags = DEMO_SERVICE_CFLAGS.filter((f) => f !== "-pie");
  await execFileAsync("gcc", [...compileFlags, "-c", "-o", svc, DEMO_SERVICE_SOURCE]);
  await execFileAsync("objcopy", ["-W", "compute_price", "-W", "service_version", svc]);
  await execFileAsync("gcc", [...compileFlags, "-c", "-o", fix, DEMO_FIX_SOURCE]);
  await execFileAsync("gcc", ["-pie", "-pthread", "-o", out, svc, fix]);
  return out;
}

/** Polls `check` every 20 ms until it returns true or `timeoutMs` passes. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
