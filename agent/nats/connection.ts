/** The agent's NATS connection: reconnects forever once up, so a NATS restart or outage never ends the agent. */
import { connect, type NatsConnection } from "@nats-io/transport-node";

/**
 * Connects to `servers`, trying again every `retryMs` until it succeeds or `signal` aborts (then it
 * rejects with the abort reason). Once connected, the client itself reconnects without limit.
 */
export async function connectNats(
  servers: string[],
  name: string,
  signal?: AbortSignal,
  retryMs = 500,
): Promise<NatsConnection> {
  for (;;) {
    signal?.throwIfAborted();
    try {
      return await connect({
        servers,
        name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        reconnectJitter: 100,
        // Our own heartbeats detect loss; the client's ping only has to notice a dead socket eventually.
        pingInterval: 10_000,
        maxPingOut: 2,
      });
    } catch {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, retryMs);
        signal?.addEventListener(
          "abort",
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
    }
  }
}
