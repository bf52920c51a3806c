// Waiting on events with a deadline — never sleeping as synchronisation.

/** Resolves when `predicate` returns a truthy value; checks again whenever `subscribe` signals. */
export function waitFor<T>(
  describe: string,
  timeoutMs: number,
  check: () => T | undefined | false | null | Promise<T | undefined | false | null>,
  intervalMs = 50,
): Promise<T> {
  const started = Date.now();
  return new Promise<T>((resolve, reject) => {
    const tick = async () => {
      try {
        const value = await check();
        if (value) return resolve(value);
      } catch (e) {
        return reject(e);
      }
      if (Date.now() - started > timeoutMs)
        return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describe}`));
      setTimeout(() => void tick(), intervalMs);
    };
    void tick();
  });
}

/** Collects values pushed by a callback and lets a test await the first one that matches. */
export class Collector<T> {
  readonly items: T[] = [];
  private waiters: Array<{ match: (t: T) => boolean; resolve: (t: T) => void }> = [];

  push = (item: T): void => {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(item)) return true;
      w.resolve(item);
      return false;
    });
  };

  next(describe: string, match: (t: T) => boolean, timeoutMs = 10_000): Promise<T> {
    const seen = this.items.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`timed out after ${timeoutMs} ms waiting for ${describe}; got ${JSON.stringify(this.items)}`),
          ),
        timeoutMs,
      );
      this.waiters.push({
        match,
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
      });
    });
  }
}
