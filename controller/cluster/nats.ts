/** Connecting the controller to NATS, with a clear error when the servers cannot be reached or refuse our credentials. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type NatsClientConfig, natsConnectOptions, plainNats } from "../../common/nats_client.js";
import { ClusterError } from "./errors.js";

/** Where and as whom to connect: a `nats:` section, or server URLs of a lab server that asks no credentials. */
export type NatsTarget = NatsClientConfig | string[];

/** Connects to the first reachable server of `target`; fails within `timeoutMs`. */
export async function connectNats(target: NatsTarget, name: string, timeoutMs = 5000): Promise<NatsConnection> {
  const cfg = Array.isArray(target) ? plainNats(target) : target;
  const options = await natsConnectOptions(cfg).catch((cause: Error) => {
    throw new ClusterError("ENATS_CONNECT", cause.message, { servers: cfg.servers }, { cause });
  });
  try {
    return await connect({ ...options, name, timeout: timeoutMs, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  } catch (cause) {
    throw new ClusterError(
      "ENATS_CONNECT",
      `cannot reach NATS at ${cfg.servers.join(", ")}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { servers: cfg.servers },
      { cause },
    );
  }
}
