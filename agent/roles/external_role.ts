/** Role read from an existing HA manager: a command's output or a file's content (`active` / `standby`), polled. */
import { readFile } from "node:fs/promises";
import type { CommandConfig, HooksConfig, RoleName } from "../config/types.js";
import { AgentError } from "../errors.js";
import { runCommand } from "./hooks.js";
import { RoleState } from "./role_state.js";
import { Serial } from "./serial.js";
import type { NodeRole, RoleController, RoleListener } from "./types.js";

/** Where the external role is read from. */
export type ExternalSource = { kind: "command"; command: CommandConfig } | { kind: "file"; file: string };

/** `active` or `standby` (any case, surrounding space ignored); anything else is unknown. */
export function parseRole(text: string): NodeRole {
  const t = text.trim().toLowerCase();
  return t === "active" || t === "standby" ? t : "unknown";
}

export class ExternalRole implements RoleController {
  private readonly state = new RoleState("unknown");
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly switching = new Serial();

  constructor(
    private readonly source: ExternalSource,
    private readonly pollMs: number,
    private readonly hooks: HooksConfig,
    private readonly env: Record<string, string>,
    private readonly onError: (err: Error) => void,
  ) {}

  get role(): NodeRole {
    return this.state.role;
  }

  /** Reads the source once and updates the role; a failed read makes the role unknown. */
  async refresh(): Promise<NodeRole> {
    try {
      const text =
        this.source.kind === "file"
          ? await readFile(this.source.file, "utf8")
          : await runCommand(this.source.command, "role command", this.env);
      this.state.set(parseRole(text), `external ${this.source.kind}`);
    } catch (err) {
      this.onError(err as Error);
      this.state.set("unknown", `external ${this.source.kind} unreadable`);
    }
    return this.state.role;
  }

  async start(): Promise<void> {
    await this.refresh();
    const loop = () => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.refresh().finally(loop), this.pollMs);
    };
    loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.switching.idle();
  }

  /**
   * Runs the hook, then re-reads the source until the HA manager reports `target` (it may apply
   * the hook's request after the hook returns): resolves only once the role really changed, so
   * nothing waits for the next poll. The hook's timeout bounds hook and confirmation together.
   */
  switchover(target: RoleName, signal?: AbortSignal): Promise<NodeRole> {
    return this.switching.run(async () => {
      const what = target === "active" ? "promote" : "demote";
      const hook = target === "active" ? this.hooks.promote : this.hooks.demote;
      if (!hook) {
        throw new AgentError(
          "EPRECONDITION",
          `roles come from an external HA manager and no ${what} hook is configured (role.hooks); switch over in the HA manager`,
        );
      }
      const deadline = performance.now() + hook.timeoutMs;
      await runCommand(hook, `${what} hook`, this.env, signal);
      const recheckMs = Math.min(this.pollMs, 20);
      for (;;) {
        if ((await this.refresh()) === target) return target;
        signal?.throwIfAborted();
        if (performance.now() + recheckMs > deadline) {
          throw new AgentError(
            "EHOOK",
            `the ${what} hook (${hook.argv.join(" ")}) ran, but the HA manager still reports ${this.state.role} ${hook.timeoutMs} ms after it was started`,
          );
        }
        await new Promise((r) => setTimeout(r, recheckMs));
      }
    });
  }

  onChange(l: RoleListener): () => void {
    return this.state.onChange(l);
  }
}
