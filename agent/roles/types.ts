/** What the agent says about its own role. */
import type { RoleName } from "../config/types.js";

/** The node's role: active, standby, or unknown (no HA information yet). */
export type NodeRole = RoleName | "unknown";

/** Called with the new role and why it changed. */
export type RoleListener = (role: NodeRole, reason: string) => void;

/** One source of the node's role (static, external, managed). */
export interface RoleController {
  /** The role right now. */
  readonly role: NodeRole;
  /** Starts following the source. */
  start(): Promise<void>;
  /** Stops following it (the role stays what it was). */
  stop(): Promise<void>;
  /** Moves this node to `target` through the hooks; resolves with the new role. */
  switchover(target: RoleName, signal?: AbortSignal): Promise<NodeRole>;
  /** Calls `l` on every change until the returned function is called. */
  onChange(l: RoleListener): () => void;
}
