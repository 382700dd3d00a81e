/** Deadlines as abort signals: they fire on time even when the garbage collector runs meanwhile. */
import assert from "node:assert/strict";
import { it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { deadlineSignal } from "../../common/index.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const aborted = (s: AbortSignal) =>
  new Promise<unknown>((resolve) => s.addEventListener("abort", () => resolve(s.reason), { once: true }));

it("fires with a TimeoutError even when nothing but the signal's listener refers to it and GC runs", async () => {
  const fired: unknown[] = [];
  const parent = new AbortController(); // long-lived, like a drill's or a server's signal
  for (let i = 0; i < 20; i++) {
    const d = deadlineSignal(100, parent.signal);
    d.signal.addEventListener("abort", () => fired.push(d.signal.reason), { once: true });
  }
  const collecting = setInterval(gc, 5);
  try {
    const giveUp = Date.now() + 10_000;
    while (fired.length < 20 && Date.now() < giveUp) await new Promise((r) => setTimeout(r, 10));
  } finally {
    clearInterval(collecting);
  }
  assert.equal(fired.length, 20);
  assert.ok(fired.every((r) => r instanceof DOMException && r.name === "TimeoutError"));
});

it("follows a parent's abort with the parent's reason, and a parent aborted already", async () => {
  const parent = new AbortController();
  const d = deadlineSignal(60_000, undefined, parent.signal);
  const reason = new Error("cancelled by the client");
  const seen = aborted(d.signal);
  parent.abort(reason);
  assert.equal(await seen, reason);
  d.dispose();
  const late = deadlineSignal(60_000, parent.signal);
  assert.equal(late.signal.reason, reason);
  late.dispose();
});

it("after dispose() neither the timer nor a parent aborts it", async () => {
  const parent = new AbortController();
  const d = deadlineSignal(20, parent.signal);
  d.dispose();
  parent.abort(new Error("later"));
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(d.signal.aborted, false);
});

it("an infinite deadline only follows its parents", async () => {
  const parent = new AbortController();
  const d = deadlineSignal(Number.POSITIVE_INFINITY, parent.signal);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(d.signal.aborted, false);
  parent.abort(new Error("stop"));
  assert.equal(d.signal.aborted, true);
  d.dispose();
});

it("judges the deadline only after the I/O that became ready while the process was held up", async () => {
  const { createServer, connect } = await import("node:net");
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  try {
    const d = deadlineSignal(50);
    const first = new Promise<string>((resolve) => {
      d.signal.addEventListener("abort", () => resolve("deadline"), { once: true });
      const sock = connect((server.address() as { port: number }).port, "127.0.0.1");
      sock.once("connect", () => {
        sock.destroy();
        resolve("connected");
      });
    });
    const end = Date.now() + 300;
    while (Date.now() < end) {
      // held up past the deadline (GC, a busy CPU), while the kernel completes the connection
    }
    assert.equal(await first, "connected");
    // The deadline still fires afterwards when nobody disposes of it.
    await aborted(d.signal);
    d.dispose();
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
