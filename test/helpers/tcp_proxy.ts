/**
 * A TCP proxy between one client and a server that a test can partition: `cut()` keeps the
 * connections open but drops every byte both ways (a silent network partition, the hard case:
 * nothing tells the client), `heal()` lets bytes flow again on new connections.
 */
import { connect, createServer, type Server, type Socket } from "node:net";

export interface TcpProxy {
  port: number;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let open = true;
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    if (!open) {
      // A partitioned network: accept nothing useful, answer nothing.
      client.on("data", () => undefined);
      client.on("error", () => undefined);
      pairs.add([client, client]);
      return;
    }
    const upstream = connect(targetPort, "127.0.0.1");
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.on("data", (d) => {
      if (open) upstream.write(d);
    });
    upstream.on("data", (d) => {
      if (open) client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      open = false;
    },
    heal() {
      // Old connections lost bytes, so they are broken for good: reset them, as a real link flap would.
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
      open = true;
    },
    async close() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
