/**
 * Probes every service and reads the host's load on a loop of its own, one round per heartbeat
 * interval; heartbeats publish the latest round without waiting for probes.
 */
import type { Logger } from "../log.js";
import type { ServiceHealthNow, ServiceWatch } from "./service_health.js";

/** 1-minute load average and the fraction of memory in use. */
export interface HostLoad {
  load1: number;
  memoryUsed: number;
}

export class ProbeLoop {
  /** Each service's health from the latest round. */
  health: ServiceHealthNow[] = [];
  /** The host's load from the latest round. */
  load: HostLoad = { load1: 0, memoryUsed: 0 };
  #running = false;
  #done: Promise<void> = Promise.resolve();

  /** `afterRound` runs after every round that succeeded, with its number (1, 2, …). */
  constructor(
    private readonly watches: ServiceWatch[],
    private readonly readLoad: () => Promise<HostLoad>,
    private readonly intervalMs: number,
    private readonly afterRound: (round: number) => Promise<void> | void,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.#running = true;
    this.#done = this.#loop();
  }

  /** Stops after the round in progress. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }

  async #loop(): Promise<void> {
    let round = 0;
    while (this.#running) {
      const started = performance.now();
      try {
        [this.health, this.load] = await Promise.all([
          Promise.all(this.watches.map((w) => w.check())),
          this.readLoad(),
        ]);
        await this.afterRound(++round);
      } catch (err) {
        this.log.warn({ err }, "probe round failed");
      }
      await new Promise((r) => setTimeout(r, Math.max(0, this.intervalMs - (performance.now() - started))));
    }
  }
}
