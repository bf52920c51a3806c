// Waiting for something outside the process (a pid to exit, a file to appear) with a deadline.
// Where the kernel offers no event Node can wait on (process exit of a non-child), the condition
// is re-checked on a short interval until it holds or the deadline passes.
import { setTimeout as delay } from 'node:timers/promises';

export async function waitUntil(check: () => boolean | Promise<boolean>, options: { timeoutMs: number; what: string; intervalMs?: number; signal?: AbortSignal }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (options.signal?.aborted) throw new Error(`aborted waiting for ${options.what}`);
    if (Date.now() >= deadline) throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}`);
    // an abort ends the pause at once; the check above then reports it
    await delay(options.intervalMs ?? 20, undefined, { signal: options.signal }).catch(() => undefined);
  }
}
