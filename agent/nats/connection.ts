/** The agent's NATS connection: reconnects forever once up, so a NATS restart or outage never ends the agent. */
import { type ConnectionOptions, connect, type NatsConnection } from "@nats-io/transport-node";
import { type NatsClientConfig, natsConnectOptions } from "../../common/nats_client.js";
import { AgentError } from "../errors.js";

/** Reads the credentials and TLS files of `cfg` (ECONFIG naming the file when one cannot be read). */
export async function agentNatsOptions(cfg: NatsClientConfig): Promise<ConnectionOptions> {
  try {
    return await natsConnectOptions(cfg);
  } catch (err) {
    throw new AgentError("ECONFIG", (err as Error).message, { field: "nats" }, { cause: err });
  }
}

/**
 * Connects with `options`, trying again every `retryMs` until it succeeds or `signal` aborts (then it
 * rejects with the abort reason); `onError` hears why an attempt failed (refused credentials, say)
 * and, once connected, every error the server reports (a permissions violation). Once connected,
 * the client itself reconnects without limit.
 */
export async function connectNats(
  options: ConnectionOptions,
  name: string,
  onError: (err: unknown) => void,
  signal?: AbortSignal,
  retryMs = 500,
): Promise<NatsConnection> {
  for (;;) {
    signal?.throwIfAborted();
    try {
      const nc = await connect({
        ...options,
        name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        reconnectJitter: 100,
        // Our own heartbeats detect loss; the client's ping only has to notice a dead socket eventually.
        pingInterval: 10_000,
        maxPingOut: 2,
      });
      void (async () => {
        for await (const s of nc.status()) if (s.type === "error") onError(s.error);
      })();
      return nc;
    } catch (err) {
      onError(err);
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
