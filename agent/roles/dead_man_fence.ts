/**
 * A dead man's switch for a managed active node. While this node holds the pair's lease, a small
 * shell process of its own session waits on a pipe from the agent. When the agent ends without
 * saying so first (SIGKILL, a crash, the OOM killer), the pipe closes and the shell runs the demote
 * hook at once: the orphaned service steps down before the peer can take the lease over, instead
 * of staying active beside it until a restarted agent fences it. When the agent demotes the service
 * itself, it disarms the switch first, so the hook never runs twice.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import type { CommandConfig } from "../config/types.js";
import { findByCommandLine } from "../procfs/processes.js";

/*
 * Signals are ignored while it waits (a terminal's ^C or a supervisor's SIGTERM to the agent's group
 * must not disarm it); EOF or any other line than "disarm" means the agent is gone. The hook is
 * bounded by its timeout when coreutils' `timeout` is there, as the agent bounds it. The shell
 * waits for the hook instead of becoming it, so that its command line (which names the switch
 * "hotpatch-fence") shows until the hook has ended.
 */
const SCRIPT = `trap '' INT TERM HUP
IFS= read -r word
[ "$word" = disarm ] && exit 0
trap - INT TERM HUP
t=$1; shift
if command -v timeout >/dev/null 2>&1; then timeout -s KILL "$t" "$@"; else "$@"; fi`;

export class DeadManFence {
  private child: ChildProcess | null = null;

  constructor(
    /** Names this node's switches on their command line (`hotpatch-fence:<lease key>:<node>`), so a later run finds them. */
    private readonly name: string,
    private readonly hook: CommandConfig,
    private readonly env: Record<string, string>,
    private readonly log: (msg: string, err?: unknown) => void,
  ) {}

  /**
   * Waits until no switch of this node is left from an earlier run (its demote hook still running),
   * so that this run's hooks never overlap it; gives up after the hook's timeout and a second.
   */
  async leftoversEnded(signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.hook.timeoutMs + 1000;
    let logged = false;
    for (;;) {
      const left = await this.running();
      if (left.length === 0) return;
      if (!logged) {
        this.log(
          `waiting for the dead man's switch of an earlier agent run (pid ${left.join(", ")}) to finish its demote hook`,
        );
        logged = true;
      }
      if (Date.now() > deadline) {
        this.log(`the dead man's switch of an earlier agent run (pid ${left.join(", ")}) is still running; going on`);
        return;
      }
      await sleep(20, undefined, { signal });
    }
  }

  /** Pids of this node's switches now running (other than the one this run armed). */
  private running(): Promise<number[]> {
    const own = this.child?.pid;
    return findByCommandLine((argv) => argv[0] === "/bin/sh" && argv[3] === this.name).then((pids) =>
      pids.filter((pid) => pid !== own),
    );
  }

  /** Arms the switch (once; arming an armed switch does nothing). A switch that cannot start is logged. */
  arm(): void {
    if (this.child) return;
    const seconds = (this.hook.timeoutMs / 1000).toFixed(3);
    const child = spawn("/bin/sh", ["-c", SCRIPT, this.name, seconds, ...this.hook.argv], {
      env: { ...process.env, ...this.env, HOTPATCH_FENCE: "agent-ended" },
      detached: true, // its own session: a signal to the agent's process group does not reach it
      stdio: ["pipe", "ignore", "ignore"],
    });
    child.once("error", (err) => {
      this.log("could not start the dead man's switch; a killed agent leaves its service active", err);
      if (this.child === child) this.child = null;
    });
    child.stdin?.on("error", () => undefined); // it died first: nothing to disarm
    child.once("exit", () => {
      if (this.child === child) this.child = null;
    });
    child.unref();
    this.child = child;
  }

  /** Disarms the switch: its shell exits without running the hook. Resolves once it has exited. */
  async disarm(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once("exit", () => resolve());
    });
    child.stdin?.end("disarm\n");
    await exited;
  }
}
