/** Runs tasks one at a time per key (one patch operation per process at a time). */
export class KeyedLock<K> {
  private readonly tails = new Map<K, Promise<unknown>>();

  run<T>(key: K, task: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(task, task);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}

/**
 * Runs `task` holding the locks of every key, taken one by one in sorted order (so two callers with
 * overlapping keys never wait on each other in a circle).
 */
export function runAll<K extends number | string, T>(
  lock: KeyedLock<K>,
  keys: K[],
  task: () => Promise<T>,
): Promise<T> {
  const sorted = [...new Set(keys)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const hold = (i: number): Promise<T> => (i === sorted.length ? task() : lock.run(sorted[i] as K, () => hold(i + 1)));
  return hold(0);
}

/** Maps `items` through `fn` with at most `limit` running at once, keeping order. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let i = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) {
      const k = i++;
      out[k] = await fn(items[k] as T);
    }
  });
  await Promise.all(workers);
  return out;
}
