/** The agent's NATS connection: reconnects forever, so a NATS restart or outage never ends the agent. */
import { connect, type NatsConnection } from "@nats-io/transport-node";

/** Connects to `servers`, retrying the first connection too; resolves once connected. */
export async function connectNats(servers: string[], name: string): Promise<NatsConnection> {
  return connect({
    servers,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    waitOnFirstConnect: true,
    // Our own heartbeats detect loss; the client's ping only has to notice a dead socket eventually.
    pingInterval: 10_000,
    maxPingOut: 2,
  });
}
