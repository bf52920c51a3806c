// An exclusive lock on a file, with flock(2) through koffi (libc). The kernel holds it for the
// open file description and drops it when the holder closes it or dies — kill -9 included — so
// there is no stale lock to detect and no take-over two processes could both win. The lock file
// is never removed (removing it would let a second process lock a new file of the same name while
// a waiter still holds the old one); its content names the holder, for messages only.
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync, constants } from 'node:fs';
import koffi from 'koffi';
import { VirtwireError } from '../errors/index.js';
import { waitUntil } from './wait.js';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

let flockFn: ((fd: number, op: number) => number) | undefined;
const flock = (fd: number, op: number): number =>
  (flockFn ??= koffi.load('libc.so.6').func('int flock(int fd, int op)') as (fd: number, op: number) => number)(fd, op);

export interface LockHolder {
  pid: number;
  /** what the holder is doing, e.g. "virtwire apply -f tenants.yaml" */
  command: string;
  since: string;
}

export class FileLock {
  private constructor(
    private fd: number | undefined,
    readonly file: string,
    private readonly shared = false,
  ) {}

  /**
   * The lock at once, or undefined when another holder has it. `shared`: a reader's lock (any
   * number at once, none while someone holds it exclusively); it leaves the holder note alone.
   */
  static tryAcquire(file: string, command: string, options: { shared?: boolean } = {}): FileLock | undefined {
    const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
    if (flock(fd, (options.shared ? LOCK_SH : LOCK_EX) | LOCK_NB) !== 0) {
      closeSync(fd);
      return undefined;
    }
    if (!options.shared) {
      const holder: LockHolder = { pid: process.pid, command, since: new Date().toISOString() };
      ftruncateSync(fd, 0);
      writeSync(fd, `${JSON.stringify(holder)}\n`, 0);
    }
    return new FileLock(fd, file, options.shared === true);
  }

  /** Waits for the lock up to `timeoutMs`; LOCKED naming the holder after that. */
  static async acquire(
    file: string,
    command: string,
    options: { timeoutMs: number; signal?: AbortSignal; shared?: boolean },
  ): Promise<FileLock> {
    let lock: FileLock | undefined;
    const shared = options.shared === true;
    // flock would block the event loop: the non-blocking attempt is repeated instead
    await waitUntil(() => (lock = FileLock.tryAcquire(file, command, { shared })) !== undefined, {
      ...options,
      what: `the lock ${file}`,
    }).catch((cause: unknown) => {
      throw lockedError(file, cause);
    });
    return lock!;
  }

  /** Who holds (or last held) the lock, from the file's content. */
  static holder(file: string): LockHolder | undefined {
    try {
      const h = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
      return typeof h.pid === 'number' ? h : undefined;
    } catch {
      return undefined;
    }
  }

  get held(): boolean {
    return this.fd !== undefined;
  }

  release(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    if (!this.shared) ftruncateSync(fd, 0);
    flock(fd, LOCK_UN);
    closeSync(fd);
  }
}

export function lockedError(file: string, cause?: unknown): VirtwireError {
  const h = FileLock.holder(file);
  const who = h ? `process ${h.pid} running "${h.command}" (since ${h.since})` : 'another process';
  return new VirtwireError('LOCKED', `${file} is locked by ${who}`, cause === undefined ? {} : { cause });
}
