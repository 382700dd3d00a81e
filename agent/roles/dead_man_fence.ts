/**
 * A dead man's switch for a managed active node. While this node holds the pair's lease, a small
 * shell process of its own session waits on a pipe from the agent. When the agent ends without
 * saying so first (SIGKILL, a crash, the OOM killer), the pipe closes and the shell runs the demote
 * hook at once: the orphaned service steps down before the peer can take the lease over, instead
 * of staying active beside it until a restarted agent fences it. When the agent demotes the service
 * itself, it disarms the switch first, so the hook never runs twice.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { CommandConfig } from "../config/types.js";

/*
 * Signals are ignored while it waits (a terminal's ^C or a supervisor's SIGTERM to the agent's group
 * must not disarm it); EOF or any other line than "disarm" means the agent is gone. The hook is
 * bounded by its timeout when coreutils' `timeout` is there, as the agent bounds it.
 */
const SCRIPT = `trap '' INT TERM HUP
IFS= read -r word
[ "$word" = disarm ] && exit 0
trap - INT TERM HUP
t=$1; shift
command -v timeout >/dev/null 2>&1 && exec timeout -s KILL "$t" "$@"
exec "$@"`;

export class DeadManFence {
  private child: ChildProcess | null = null;

  constructor(
    private readonly hook: CommandConfig,
    private readonly env: Record<string, string>,
    private readonly log: (msg: string, err?: unknown) => void,
  ) {}

  /** True while a switch is armed. */
  get armed(): boolean {
    return this.child !== null;
  }

  /** Arms the switch (once; arming an armed switch does nothing). A switch that cannot start is logged. */
  arm(): void {
    if (this.child) return;
    const seconds = (this.hook.timeoutMs / 1000).toFixed(3);
    const child = spawn("/bin/sh", ["-c", SCRIPT, "hotpatch-fence", seconds, ...this.hook.argv], {
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
