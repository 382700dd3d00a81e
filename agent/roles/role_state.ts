/** The current role plus its listeners: shared by every role source. */
import type { NodeRole, RoleListener } from "./types.js";

export class RoleState {
  private current: NodeRole;
  private readonly listeners = new Set<RoleListener>();

  constructor(initial: NodeRole) {
    this.current = initial;
  }

  get role(): NodeRole {
    return this.current;
  }

  /** Changes the role and tells listeners (only when it really changes). */
  set(role: NodeRole, reason: string): void {
    if (role === this.current) return;
    this.current = role;
    for (const l of this.listeners) l(role, reason);
  }

  onChange(l: RoleListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}
