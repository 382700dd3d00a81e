/**
 * Watches a pair's demo services through their own `HEALTH` answers, in rounds (both nodes asked
 * at once, then a short pause): the longest window in which no node answered active (from the
 * middle of the last round that saw an active node to the middle of the next one that did, so it
 * is exact to about one round), and whether any round saw both active.
 */
import { type Endpoint, sendLine } from "../deploy/demo/index.js";

/** What the rounds saw. */
export interface RoleWindows {
  /** Longest stretch with no node answering active, ms (0 when every round saw one). */
  noActiveMaxMs: number;
  /** A round in which both nodes answered active. */
  bothActive: boolean;
  /** Rounds taken. */
  rounds: number;
}

/** Samples until stop() is called; stop resolves with the figures. */
export function watchServiceRoles(endpoints: Endpoint[], pauseMs = 5): { stop(): Promise<RoleWindows> } {
  let running = true;
  const out: RoleWindows = { noActiveMaxMs: 0, bothActive: false, rounds: 0 };
  const done = (async () => {
    let lastActiveAt: number | null = null;
    let gapOpen = false;
    while (running) {
      const started = performance.now();
      const answers = await Promise.all(endpoints.map((e) => sendLine(e, "HEALTH", { timeoutMs: 500 })));
      const at = (started + performance.now()) / 2;
      out.rounds++;
      const active = answers.filter((a) => a.kind === "answer" && a.line.startsWith("OK active")).length;
      if (active >= 2) out.bothActive = true;
      if (active === 0) gapOpen = true;
      else {
        if (gapOpen && lastActiveAt !== null) out.noActiveMaxMs = Math.max(out.noActiveMaxMs, at - lastActiveAt);
        gapOpen = false;
        lastActiveAt = at;
      }
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      out.noActiveMaxMs = Math.round(out.noActiveMaxMs);
      return out;
    },
  };
}
