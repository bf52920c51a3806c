// The state dir's lock: one holder at a time across threads of this process (an in-process
// queue) and across processes (an O_EXCL lock file holding the owner's pid; a file whose owner
// is dead is stale and taken over). Waiting has a deadline.
import { openSync, closeSync, writeSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { VirtwireError } from '../errors/index.js';
import { pidAlive } from '../host/host-files.js';
import { waitUntil } from '../host/wait.js';

const queues = new Map<string, Promise<void>>();

export async function withStateLock<T>(stateDir: string, fn: () => Promise<T>, timeoutMs = 120_000): Promise<T> {
  const file = join(stateDir, 'lock');
  const prev = queues.get(file) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  queues.set(file, prev.then(() => mine));
  await prev;
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o755 });
    await waitUntil(() => tryAcquire(file), { timeoutMs, what: `the virtwire state lock ${file}` }).catch((cause: unknown) => {
      throw new VirtwireError('LOCKED', `${file} is held by process ${owner(file) ?? '?'}`, { cause });
    });
    try {
      return await fn();
    } finally {
      rmSync(file, { force: true });
    }
  } finally {
    release();
    if (queues.get(file) === mine) queues.delete(file);
  }
}

function owner(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function tryAcquire(file: string): boolean {
  try {
    const fd = openSync(file, 'wx', 0o644);
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const pid = owner(file);
    // a lock whose owner died (or never wrote its pid and is gone) is stale
    if (pid !== undefined && pid !== process.pid && !pidAlive(pid)) rmSync(file, { force: true });
    return false;
  }
}

/**
 * The CLI's command lock: taken at once or not at all. The file names the holder's pid and
 * command, so a second `virtwire apply` says who is busy instead of waiting.
 */
export async function withCommandLock<T>(stateDir: string, command: string, fn: () => Promise<T>): Promise<T> {
  mkdirSync(stateDir, { recursive: true, mode: 0o755 });
  const file = join(stateDir, 'command.lock');
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n${command}\n`);
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const [pid, holder] = readFileSync(file, 'utf8').split('\n');
      if (attempt === 0 && !(Number(pid) > 0 && pidAlive(Number(pid)))) {
        rmSync(file, { force: true }); // its holder died (killed mid-apply): take it over
        continue;
      }
      throw new VirtwireError('LOCKED', `the state in ${stateDir} is locked by process ${pid} running "${holder}"`);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}
