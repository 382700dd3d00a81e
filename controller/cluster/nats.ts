/** Connecting the controller to NATS, with a clear error when the servers cannot be reached. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ClusterError } from "./errors.js";

/** Connects to the first reachable server of `servers`; fails within `timeoutMs`. */
export async function connectNats(servers: string[], name: string, timeoutMs = 5000): Promise<NatsConnection> {
  try {
    return await connect({ servers, name, timeout: timeoutMs, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  } catch (cause) {
    throw new ClusterError(
      "ENATS_CONNECT",
      `cannot reach NATS at ${servers.join(", ")}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { servers },
      { cause },
    );
  }
}
