/** Role fixed in the configuration; a switchover runs the hook and changes it in memory. */
import type { HooksConfig, RoleName } from "../config/types.js";
import { runCommand } from "./hooks.js";
import { RoleState } from "./role_state.js";
import { Serial } from "./serial.js";
import type { NodeRole, RoleController, RoleListener } from "./types.js";

export class StaticRole implements RoleController {
  private readonly state: RoleState;
  private readonly switching = new Serial();

  constructor(
    initial: RoleName,
    private readonly hooks: HooksConfig,
    private readonly env: Record<string, string>,
  ) {
    this.state = new RoleState(initial);
  }

  get role(): NodeRole {
    return this.state.role;
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {
    await this.switching.idle();
  }

  /** Runs the hook to its end, then changes the role: the role says active only once the service is. One switchover at a time. */
  switchover(target: RoleName, signal?: AbortSignal): Promise<NodeRole> {
    return this.switching.run(async () => {
      signal?.throwIfAborted();
      if (target === this.state.role) return target;
      const hook = target === "active" ? this.hooks.promote : this.hooks.demote;
      if (hook) await runCommand(hook, `${target === "active" ? "promote" : "demote"} hook`, this.env, signal);
      this.state.set(target, "switchover");
      return target;
    });
  }

  onChange(l: RoleListener): () => void {
    return this.state.onChange(l);
  }
}
