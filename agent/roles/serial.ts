/** Runs tasks one at a time, in the order they were queued: a node's hooks never overlap or overtake each other. */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  /** Queues `task` after every task queued before it; resolves or rejects as it does. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Resolves once every task queued so far has ended. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
