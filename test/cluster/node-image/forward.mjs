// Forwards TCP connections on 0.0.0.0:<from> to 127.0.0.1:<to>: the node's own front door to its
// loopback-only service, as a load balancer's backend would be. A connection the service refuses
// is closed at once, so a dead service shows to clients as failed requests.
import net from "node:net";

const [from, to] = process.argv.slice(2).map(Number);
net
  .createServer((client) => {
    const up = net.connect(to, "127.0.0.1");
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
    client.pipe(up).pipe(client);
  })
  .listen(from, "0.0.0.0");
