// Waiting for something outside the process, with a deadline and an abort signal: the one waiter
// every part of virtwire uses.
//  - waitForFile: a file's text to satisfy a test (a DHCP lease written, a line on a guest's
//    console). The file's directory is watched (inotify), so it resolves as soon as the file is
//    written or replaced; a file on another host is re-read over that host's connection instead.
//  - waitUntil: where the kernel offers no event Node can wait on (a non-child process exiting,
//    a lock another process holds), the condition is re-checked on a short interval.
import { watch, existsSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { dirname, basename } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { VirtwireError } from '../errors/index.js';

export interface WaitOptions {
  timeoutMs: number;
  /** what is awaited, for the TIMEOUT/ABORTED message */
  what: string;
  signal?: AbortSignal;
}

const timedOut = (o: WaitOptions) =>
  new VirtwireError('TIMEOUT', `timed out after ${o.timeoutMs} ms waiting for ${o.what}`);
const aborted = (o: WaitOptions) =>
  new VirtwireError('ABORTED', `aborted waiting for ${o.what}`, { cause: o.signal?.reason });

export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  options: WaitOptions & { intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (options.signal?.aborted) throw aborted(options);
    if (Date.now() >= deadline) throw timedOut(options);
    // an abort ends the pause at once; the check above then reports it
    await delay(options.intervalMs ?? 20, undefined, { signal: options.signal }).catch(() => undefined);
  }
}

/** The whole file as text ('' when it does not exist), read through one descriptor. */
export function readText(file: string): string {
  if (!existsSync(file)) return '';
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(fstatSync(fd).size);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

/**
 * Resolves with `test(text)` of a local file as soon as it is not undefined: checked at once,
 * then whenever the file's directory reports a change to it (written in place or replaced).
 */
export function waitForFile<T>(file: string, test: (text: string) => T | undefined, options: WaitOptions): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const name = basename(file);
    const watcher = watch(dirname(file), (_event, changed) => {
      if (changed === null || changed === name) check();
    });
    const timer = setTimeout(() => finish(timedOut(options)), options.timeoutMs);
    const onAbort = () => finish(aborted(options));
    options.signal?.addEventListener('abort', onAbort);
    let settled = false;
    function finish(err: Error | undefined, value?: T) {
      if (settled) return;
      settled = true;
      watcher.close();
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(value as T);
    }
    function check() {
      try {
        const value = test(readText(file));
        if (value !== undefined) finish(undefined, value);
      } catch (e) {
        finish(e as Error);
      }
    }
    if (options.signal?.aborted) return onAbort();
    check(); // it may already be there
  });
}

/** The same for a file reached through commands (a remote host): re-read every `intervalMs`. */
export async function pollFile<T>(
  read: () => Promise<string | undefined>,
  test: (text: string) => T | undefined,
  options: WaitOptions & { intervalMs?: number },
): Promise<T> {
  let value: T | undefined;
  await waitUntil(async () => (value = test((await read()) ?? '')) !== undefined, options);
  return value as T;
}
