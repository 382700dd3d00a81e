/**
 * An agent held up past a probe's timeout (a GC pause, a starved CPU) reads what its sockets
 * received meanwhile before it judges the deadline: a service that accepted the connection in time
 * is not reported down. The stall is made exactly, by keeping this process busy.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import { runProbe } from "../../agent/probes/probes.js";

/** Keeps this process busy for `ms`, as a long GC pause or a starved CPU does. */
function holdUp(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
}

describe("probes of an agent held up past their timeout", () => {
  let server: Server;
  let port: number;
  before(async () => {
    // The kernel completes the connection from its listen backlog while this process is busy.
    server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("a TCP connection the service accepted in time passes", async () => {
    const probe = runProbe({ name: "port", kind: "tcp", host: "127.0.0.1", port, timeoutMs: 50 });
    holdUp(300);
    const r = await probe;
    assert.equal(r.ok, true, r.message);
  });

  it("a refused connection still fails, with its reason", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const probe = runProbe({ name: "port", kind: "tcp", host: "127.0.0.1", port: closedPort, timeoutMs: 50 });
    holdUp(300);
    const r = await probe;
    assert.equal(r.ok, false);
    assert.match(r.message, /ECONNREFUSED/);
  });
});
