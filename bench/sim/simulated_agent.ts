/**
 * SIMULATED agent, for the rollout benchmark only (never for tests): a real gRPC AgentService
 * server and a real heartbeat publisher on NATS, whose "patching" only flips an in-memory state.
 * It lets the benchmark measure the controller's own cost over many pairs without 100 hosts.
 */
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData, status } from "@grpc/grpc-js";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type AgentServiceServer,
  AgentServiceService,
  Heartbeat,
  heartbeatSubject,
  Outcome,
  PatchState,
  Role,
} from "../../proto/index.js";

export interface SimulatedAgentOptions {
  cluster: string;
  pair: string;
  node: string;
  role: "active" | "standby";
  intervalMs: number;
  nc: NatsConnection;
}

export interface SimulatedAgent {
  node: string;
  address: string;
  /** Count of Apply calls that patched (not "already"). */
  applied(): number;
  stop(): Promise<void>;
}

function unary<Req, Res>(fn: (req: Req) => Res) {
  return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => {
    try {
      cb(null, fn(call.request));
    } catch (err) {
      cb({ code: status.FAILED_PRECONDITION, details: (err as Error).message, name: "", message: "" }, null);
    }
  };
}

export async function startSimulatedAgent(o: SimulatedAgentOptions): Promise<SimulatedAgent> {
  let role = o.role === "active" ? Role.ROLE_ACTIVE : Role.ROLE_STANDBY;
  const staged = new Set<string>();
  const active = new Set<string>();
  const pid = 10_000 + Math.floor(Math.random() * 50_000);
  const runId = crypto.randomUUID();
  let seq = 0;
  let appliedCount = 0;
  const impl: AgentServiceServer = {
    info: unary(() => ({ node: o.node, pair: o.pair, cluster: o.cluster, role, version: "sim", hostname: "sim" })),
    listProcesses: unary(() => ({ processes: [] })),
    stageBundle: (call, cb) => {
      let id = "";
      call.on("data", (m: { part?: { $case: string; value: { bundleId?: string } } }) => {
        if (m.part?.$case === "header") id = m.part.value.bundleId ?? "";
      });
      call.on("end", () => {
        const already = staged.has(id);
        staged.add(id);
        cb(null, { bundleId: id, alreadyStaged: already });
      });
    },
    apply: unary((req) => {
      if (!staged.has(req.bundleId)) throw new Error(`bundle ${req.bundleId} is not staged`);
      const already = active.has(req.bundleId);
      active.add(req.bundleId);
      if (!already) appliedCount++;
      return {
        results: [
          {
            pid,
            outcome: already ? Outcome.OUTCOME_ALREADY : Outcome.OUTCOME_DONE,
            errorCode: "",
            message: "",
            pauseUs: 0,
          },
        ],
      };
    }),
    revert: unary((req) => {
      const had = active.delete(req.bundleId);
      return {
        results: [
          {
            pid,
            outcome: had ? Outcome.OUTCOME_DONE : Outcome.OUTCOME_ALREADY,
            errorCode: "",
            message: "",
            pauseUs: 0,
          },
        ],
      };
    }),
    status: unary(() => ({ stagedBundles: [...staged], patches: [], role })),
    switchover: unary((req) => {
      const previousRole = role;
      role = req.targetRole;
      return { previousRole, role };
    }),
    watchEvents: (call) => call.end(),
  };
  const server = new Server();
  server.addService(AgentServiceService, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const address = `127.0.0.1:${port}`;
  const subject = heartbeatSubject(o);
  const beat = () => {
    seq++;
    const hb = Heartbeat.fromPartial({
      cluster: o.cluster,
      pair: o.pair,
      node: o.node,
      role,
      sequence: seq,
      timestampMs: Date.now(),
      intervalMs: o.intervalMs,
      runId,
      services: [{ name: "svc", healthy: true, pid, startTime: 1234, probes: [], checkedAtMs: Date.now() }],
      patches: [...active].map((patchId) => ({ pid, patchId, state: PatchState.PATCH_STATE_ACTIVE })),
      grpcAddress: address,
    });
    o.nc.publish(subject, Heartbeat.encode(hb).finish());
  };
  beat();
  const timer = setInterval(beat, o.intervalMs);
  return {
    node: o.node,
    address,
    applied: () => appliedCount,
    async stop() {
      clearInterval(timer);
      await new Promise<void>((r) => server.tryShutdown(() => r()));
    },
  };
}
