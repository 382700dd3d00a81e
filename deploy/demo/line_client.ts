/** Transport: sends one request line over a fresh TCP connection and reads one answer line. */
import { connect } from "node:net";
import { afterPendingIo } from "../../common/index.js";
import type { Endpoint, FailureKind, LineResult } from "./types.js";

/** Longest answer line accepted; a longer one is a protocol failure. */
const MAX_ANSWER = 1024;

/**
 * Connects, sends `line` plus a newline, and resolves with the first answer line, or with why
 * there was none. Never rejects. The connection is closed either way.
 */
export function sendLine(
  endpoint: Endpoint,
  line: string,
  options: { timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<LineResult> {
  const { signal } = options;
  if (signal?.aborted) return Promise.resolve({ kind: "aborted" });
  return new Promise((resolve) => {
    let connected = false;
    let settled = false;
    let received = "";
    const socket = connect({ host: endpoint.host, port: endpoint.port });
    const finish = (result: LineResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(result);
    };
    const fail = (failure: FailureKind, detail: string) => finish({ kind: "failure", failure, detail });
    const onAbort = () => finish({ kind: "aborted" });
    // An answer that came while this process was held up (GC, a busy CPU) is read before the
    // deadline is judged, so it is not counted as a timeout.
    const timer = setTimeout(
      () =>
        afterPendingIo(() =>
          fail("timeout", `no answer within ${options.timeoutMs} ms (${connected ? "connected" : "connecting"})`),
        ),
      options.timeoutMs,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.setNoDelay(true);
    socket.on("connect", () => {
      connected = true;
      socket.write(`${line}\n`);
    });
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      const nl = received.indexOf("\n");
      if (nl >= 0) finish({ kind: "answer", line: received.slice(0, nl).replace(/\r$/, "") });
      else if (received.length > MAX_ANSWER) fail("protocol", `answer longer than ${MAX_ANSWER} bytes`);
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      const detail = err.code ?? err.message;
      fail(connected ? "reset" : "connect", detail);
    });
    socket.on("close", () => fail("reset", "connection closed before the answer line"));
  });
}
