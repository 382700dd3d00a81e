/**
 * A client of the quote service on every node, run on the host: it asks each node in turn for a
 * quote and for its health, one connection per request, and counts what it saw: answers by
 * version, wrong prices, STANDBY answers, failures, and the role each node reported. Scenarios
 * judge the cluster by these counts, from outside the nodes.
 */
import { correctPrice, sendLine } from "../../deploy/demo/index.js";
import { SERVICE_PORT } from "./container_cluster.js";

const QUANTITY = 3;

/** What the client saw from one node. */
export interface NodeCounts {
  v1: number;
  v2: number;
  /** Answers whose price is wrong for their version (v1 charges one unit more; v2 is right). */
  wrong: number;
  standby: number;
  failed: number;
  /** Last role the node reported on HEALTH ("" when none yet). */
  role: string;
  /** When it last answered anything (performance.now()). */
  lastAnswerAt: number;
}

export interface QuoteClient {
  counts(node: string): NodeCounts;
  /** All nodes' counts summed. */
  total(): { served: number; failed: number; wrong: number };
  stop(): Promise<void>;
}

function empty(): NodeCounts {
  return { v1: 0, v2: 0, wrong: 0, standby: 0, failed: 0, role: "", lastAnswerAt: 0 };
}

/** Starts asking `nodes` (name to address, read at each request so a restarted node is followed). */
export function startQuoteClient(nodes: Record<string, () => string>, everyMs = 50): QuoteClient {
  const counts = new Map<string, NodeCounts>(Object.keys(nodes).map((n) => [n, empty()]));
  const ac = new AbortController();
  const loop = async (name: string, address: () => string) => {
    const c = counts.get(name) as NodeCounts;
    for (let i = 0; !ac.signal.aborted; i++) {
      const started = performance.now();
      const health = i % 2 === 1;
      const r = await sendLine({ host: address(), port: SERVICE_PORT }, health ? "HEALTH" : `QUOTE ${QUANTITY}`, {
        timeoutMs: 1000,
        signal: ac.signal,
      });
      if (r.kind === "aborted") return;
      if (r.kind !== "answer") c.failed++;
      else {
        c.lastAnswerAt = performance.now();
        const words = r.line.trim().split(" ");
        if (health) c.role = words[0] === "OK" ? (words[1] ?? "") : "";
        else if (words[0] === "STANDBY") c.standby++;
        else if (words[0] === "v1") {
          c.v1++;
          if (Number(words[1]) !== correctPrice(QUANTITY + 1)) c.wrong++;
        } else if (words[0] === "v2") {
          c.v2++;
          if (Number(words[1]) !== correctPrice(QUANTITY)) c.wrong++;
        } else c.wrong++;
      }
      await new Promise((res) => setTimeout(res, Math.max(0, everyMs - (performance.now() - started))));
    }
  };
  const loops = Object.entries(nodes).map(([n, a]) => loop(n, a));
  return {
    counts: (n) => ({ ...(counts.get(n) ?? empty()) }),
    total: () => {
      let served = 0;
      let failed = 0;
      let wrong = 0;
      for (const c of counts.values()) {
        served += c.v1 + c.v2 + c.standby;
        failed += c.failed;
        wrong += c.wrong;
      }
      return { served, failed, wrong };
    },
    async stop() {
      ac.abort();
      await Promise.all(loops);
    },
  };
}
