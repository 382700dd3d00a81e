/** Role read from an existing HA manager: a command's output or a file's content (`active` / `standby`), polled. */
import { readFile } from "node:fs/promises";
import type { CommandConfig, HooksConfig, RoleName } from "../config/types.js";
import { AgentError } from "../errors.js";
import { runCommand } from "./hooks.js";
import { RoleState } from "./role_state.js";
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
  }

  async switchover(target: RoleName, signal?: AbortSignal): Promise<NodeRole> {
    const hook = target === "active" ? this.hooks.promote : this.hooks.demote;
    if (!hook) {
      throw new AgentError(
        "EPRECONDITION",
        `roles come from an external HA manager and no ${target === "active" ? "promote" : "demote"} hook is configured (role.hooks); switch over in the HA manager`,
      );
    }
    await runCommand(hook, `${target === "active" ? "promote" : "demote"} hook`, this.env, signal);
    return this.refresh();
  }

  onChange(l: RoleListener): () => void {
    return this.state.onChange(l);
  }
}
