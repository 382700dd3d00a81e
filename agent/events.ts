/** In-process fan-out of agent events to WatchEvents streams and to NATS. */
import { randomUUID } from "node:crypto";
import { Event } from "../proto/index.js";

/** Who this agent is, stamped on every event. */
export interface Identity {
  /** Cluster name. */
  cluster: string;
  /** Pair name. */
  pair: string;
  /** Node name. */
  node: string;
}

type Listener = (e: Event) => void;

export class EventHub {
  private readonly listeners = new Set<Listener>();

  constructor(private readonly id: Identity) {}

  /** Fills id, time and identity, and delivers the event to every listener. */
  emit(partial: Partial<Event> & { kind: string }): Event {
    const e = Event.fromPartial({ ...partial, id: randomUUID(), timestampMs: Date.now(), ...this.id });
    for (const l of this.listeners) l(e);
    return e;
  }

  /** Calls `l` for every event until the returned function is called. */
  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /**
   * Events as an async iterator, ending when `signal` aborts; at most `max` queued (oldest dropped).
   * Subscribed when called, not at the first `next()`: every event emitted from then on is delivered.
   */
  stream(signal: AbortSignal, max = 1000): AsyncGenerator<Event> {
    const queue: Event[] = [];
    let wake: (() => void) | null = null;
    const off = this.subscribe((e) => {
      if (queue.length >= max) queue.shift();
      queue.push(e);
      wake?.();
    });
    const onAbort = () => {
      off();
      wake?.();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    return (async function* drain() {
      try {
        while (!signal.aborted) {
          const next = queue.shift();
          if (next) {
            yield next;
            continue;
          }
          await new Promise<void>((r) => {
            wake = r;
          });
          wake = null;
        }
      } finally {
        off();
        signal.removeEventListener("abort", onAbort);
      }
    })();
  }
}
