/**
 * gRPC transport for the agent: credentials, identity of the caller, deadlines, and status codes.
 * All behaviour lives in service/agent_service.ts; this file only adapts calls to it.
 */
import { readFile } from "node:fs/promises";
import {
  type ServerCredentials as Creds,
  Metadata,
  Server,
  ServerCredentials,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { deadlineSignal } from "../../common/index.js";
import {
  type AgentServiceServer,
  AgentServiceService,
  type StageBundleRequest,
  type WatchEventsRequest,
  type WatchEventsResponse,
} from "../../proto/index.js";
import type { GrpcSecurity } from "../config/types.js";
import { AgentError } from "../errors.js";
import { type AgentService, type CallContext, roleToProto } from "../service/agent_service.js";
import { toGrpcError } from "./status.js";

/** What every kind of server call offers: deadline, identity, cancellation. */
type ServerSurfaceCall = Pick<ServerUnaryCall<unknown, unknown>, "getDeadline" | "getAuthContext"> &
  NodeJS.EventEmitter;

/** Server-side deadline for calls whose client set none. */
const defaultDeadlineMs = { quick: 30_000, patch: 300_000 } as const;

/** Server credentials: mTLS that requires and verifies a client certificate, or plaintext when insecure. */
export async function serverCredentials(sec: GrpcSecurity): Promise<Creds> {
  if (sec.kind === "insecure") return ServerCredentials.createInsecure();
  const read = async (what: string, file: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new AgentError(
        "ECONFIG",
        `cannot read the TLS ${what} ${file}: ${(err as Error).message}`,
        { path: file },
        { cause: err },
      );
    }
  };
  const [ca, cert, key] = await Promise.all([
    read("CA", sec.files.ca),
    read("certificate", sec.files.cert),
    read("key", sec.files.key),
  ]);
  return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
}

/** Who calls: the CN of the verified client certificate, or "insecure" without TLS. */
function actorOf(call: ServerSurfaceCall): string {
  const ctx = call.getAuthContext();
  const cn = ctx.sslPeerCertificate?.subject?.CN;
  if (typeof cn === "string" && cn) return cn;
  return ctx.transportSecurityType === "ssl" ? "unknown-cn" : "insecure";
}

/** A signal that fires at the call's deadline (or the default) and when the client cancels. */
function contextOf(call: ServerSurfaceCall, fallbackMs: number): CallContext & { deadlineAt: number; done(): void } {
  const dl = call.getDeadline();
  const at = dl instanceof Date ? dl.getTime() : Number.isFinite(dl) ? Number(dl) : Date.now() + fallbackMs;
  const cancel = new AbortController();
  const deadline = deadlineSignal(at - Date.now(), cancel.signal);
  const onCancel = () => cancel.abort(new AgentError("ECANCELLED", "the client cancelled the call"));
  call.once("cancelled", onCancel);
  return {
    actor: actorOf(call),
    signal: deadline.signal,
    deadlineAt: at,
    done: () => {
      call.removeListener("cancelled", onCancel);
      deadline.dispose();
    },
  };
}

function unary<Req, Res>(kind: keyof typeof defaultDeadlineMs, fn: (req: Req, ctx: CallContext) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => {
    const ctx = contextOf(call, defaultDeadlineMs[kind]);
    fn(call.request, ctx).then(
      (res) => {
        ctx.done();
        cb(null, res);
      },
      (err) => {
        ctx.done();
        cb(toGrpcError(err, ctx.signal));
      },
    );
  };
}

/**
 * The chunks of an upload after its header. A client whose deadline passes cancels the call, and
 * grpc-js may end the stream before our own deadline signal fires (the client's clock runs ahead of
 * ours by the transit time), so an end by cancel or at the deadline counts as that, never as a short
 * upload.
 */
async function* chunksOf(
  it: AsyncIterator<StageBundleRequest>,
  deadlineAt: number,
  cancelled: () => boolean,
): AsyncGenerator<Uint8Array> {
  const endedByClient = async (cause?: unknown): Promise<AgentError | null> => {
    await new Promise((r) => setImmediate(r)); // let grpc-js mark a cancel that ended the stream
    const options = cause === undefined ? {} : { cause };
    if (Date.now() >= deadlineAt - 1)
      return new AgentError("EDEADLINE", "the call's deadline passed before the upload was complete", {}, options);
    if (cancelled())
      return new AgentError("ECANCELLED", "the client cancelled the upload before it was complete", {}, options);
    return null;
  };
  for (;;) {
    let next: IteratorResult<StageBundleRequest>;
    try {
      next = await it.next();
    } catch (err) {
      // A cancel can also destroy the stream under the iterator (ERR_STREAM_PREMATURE_CLOSE).
      throw (await endedByClient(err)) ?? err;
    }
    if (next.done) {
      const ended = await endedByClient();
      if (ended) throw ended;
      return;
    }
    const part = next.value.part;
    if (part?.$case !== "chunk")
      throw new AgentError("EBAD_ARGUMENT", "StageBundle: only chunks may follow the header");
    yield part.value;
  }
}

/** The AgentService implementation for grpc-js. */
export function grpcHandlers(svc: AgentService): AgentServiceServer {
  return {
    info: unary("quick", async () => svc.info()),
    listProcesses: unary("quick", async (req, ctx) => ({
      processes: await svc.listProcesses(req.selector ?? {}, ctx),
    })),
    apply: unary("patch", async (req, ctx) => ({ results: await svc.apply(req, ctx) })),
    revert: unary("patch", async (req, ctx) => ({ results: await svc.revert(req, ctx) })),
    status: unary("quick", async (_req, ctx) => svc.status(ctx)),
    switchover: unary("patch", async (req, ctx) => {
      const r = await svc.switchover(req.targetRole, req.requestedBy, ctx);
      return { previousRole: roleToProto(r.previous), role: roleToProto(r.role) };
    }),
    stageBundle: (call: ServerReadableStream<StageBundleRequest, never>, cb) => {
      const ctx = contextOf(call, defaultDeadlineMs.patch);
      const work = async () => {
        const it = call[Symbol.asyncIterator]() as AsyncIterator<StageBundleRequest>;
        const first = await it.next();
        const part = first.done ? undefined : first.value.part;
        if (part?.$case !== "header")
          throw new AgentError(
            "EBAD_ARGUMENT",
            "StageBundle: the first message must be the header (bundle_id, size, sha256)",
          );
        const h = part.value;
        return svc.stageBundle(
          { bundleId: h.bundleId, size: h.size, sha256: h.sha256 },
          chunksOf(it, ctx.deadlineAt, () => call.cancelled),
          ctx,
        );
      };
      work().then(
        (res) => {
          ctx.done();
          cb(null, res);
        },
        (err) => {
          ctx.done();
          cb(toGrpcError(err, ctx.signal));
        },
      );
    },
    watchEvents: (call: ServerWritableStream<WatchEventsRequest, WatchEventsResponse>) => {
      const ac = new AbortController();
      call.once("cancelled", () => ac.abort());
      call.once("close", () => ac.abort());
      const events = svc.events(ac.signal);
      // Response headers say the subscription is live: a client that waits for them before acting
      // sees every event its action causes.
      call.sendMetadata(new Metadata());
      void (async () => {
        try {
          for await (const event of events) {
            if (!call.write({ event })) await new Promise<void>((r) => call.once("drain", () => r()));
          }
        } finally {
          call.end();
        }
      })();
    },
  };
}

/** Starts the gRPC server on `listen` (host:port); resolves with the bound port. */
export async function startGrpcServer(
  svc: AgentService,
  listen: string,
  sec: GrpcSecurity,
  maxBundleBytes: number,
): Promise<{ server: Server; port: number }> {
  const server = new Server({ "grpc.max_receive_message_length": Math.min(maxBundleBytes + 1024 * 1024, 2 ** 31 - 1) });
  server.addService(AgentServiceService, grpcHandlers(svc));
  const creds = await serverCredentials(sec);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, creds, (err, p) =>
      err
        ? reject(
            new AgentError(
              "ECONFIG",
              `cannot listen on ${listen}: ${err.message}`,
              { field: "grpc.listen" },
              { cause: err },
            ),
          )
        : resolve(p),
    );
  });
  return { server, port };
}

/** Stops accepting calls and waits up to `graceMs` for running ones, then cuts them. */
export function stopGrpcServer(server: Server, graceMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
