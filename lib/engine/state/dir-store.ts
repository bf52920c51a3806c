// The default state: a directory on this machine holding one JSON file per record and per
// security group, the serial, and two flock(2) locks (released by the kernel when a holder dies).
import {
  chmodSync,
  statSync,
  writeFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  openSync,
  writeSync,
  fsyncSync,
  closeSync,
} from 'node:fs';
import type { ResolvedSecurityGroup } from '../../../types/resolved.js';
import { VirtwireError } from '../../errors/index.js';
import { FileLock, lockedError, type LockHolder } from '../../host/index.js';
import {
  inProcessTurn,
  migrateRecord,
  RECORD_VERSION,
  type CommandLockOptions,
  type StateStore,
  type VmRecord,
} from './store.js';
import { statePaths, vmPaths, type VmPaths } from './paths.js';

export class DirStateStore implements StateStore {
  constructor(readonly dir: string) {}

  get where(): string {
    return this.dir;
  }

  async load(): Promise<void> {}

  async check(): Promise<void> {}

  async close(): Promise<void> {}

  vmPaths(name: string): VmPaths {
    return vmPaths(this.dir, name);
  }

  records(): VmRecord[] {
    const { vms } = statePaths(this.dir);
    if (!existsSync(vms)) return [];
    const records: VmRecord[] = [];
    for (const name of readdirSync(vms).sort()) {
      const file = this.vmPaths(name).record;
      if (existsSync(file)) records.push(migrateRecord(JSON.parse(readFileSync(file, 'utf8')) as VmRecord, file));
    }
    return records;
  }

  get(name: string): VmRecord | undefined {
    return this.records().find((r) => r.vm.name === name);
  }

  /**
   * Atomic and durable: temp file, fsync, rename over the old one, fsync of the directory. The
   * record holds the spec with its secrets (cloud-init user-data): 0600, in a directory only root
   * (and, once its disks are made, QEMU's group) may enter.
   */
  async put(record: VmRecord): Promise<void> {
    const { dir, record: file } = this.vmPaths(record.vm.name);
    this.ensureDirs();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeDurably(dir, file, { ...record, version: RECORD_VERSION });
    this.bump();
  }

  /** The security groups, by name. */
  securityGroups(): ResolvedSecurityGroup[] {
    const { securityGroups: dir } = statePaths(this.dir);
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')) as ResolvedSecurityGroup);
  }

  /** Writes a group as put() writes a record: atomically, durably, 0600. */
  async putSecurityGroup(group: ResolvedSecurityGroup): Promise<void> {
    const paths = statePaths(this.dir);
    this.ensureDirs();
    mkdirSync(paths.securityGroups, { recursive: true, mode: 0o700 });
    writeDurably(paths.securityGroups, paths.securityGroup(group.name), group);
    this.bump();
  }

  async removeSecurityGroup(name: string): Promise<void> {
    rmSync(statePaths(this.dir).securityGroup(name), { force: true });
    this.bump();
  }

  /**
   * The state dir 0711 and its vms/ 0711: dnsmasq's user must traverse to its own files below;
   * nobody but root may list either (see disks.ts for a VM's directory).
   */
  private ensureDirs(): void {
    const { vms } = statePaths(this.dir);
    for (const d of [this.dir, vms]) {
      mkdirSync(d, { recursive: true, mode: 0o711 });
      if ((statSync(d).mode & 0o777) !== 0o711) chmodSync(d, 0o711);
    }
  }

  /** Removes the VM's record and every file under its directory here (disks, seed, serial log). */
  async remove(name: string): Promise<void> {
    rmSync(this.vmPaths(name).dir, { recursive: true, force: true });
    this.bump();
  }

  /** Forgets a VM's record only: its directory (disks, serial log) stays where it is. */
  async forget(name: string): Promise<void> {
    rmSync(this.vmPaths(name).record, { force: true });
    this.bump();
  }

  /** The state's serial: counts every change of a record (a saved plan is stale when it moved on). */
  serial(): number {
    const file = statePaths(this.dir).serial;
    const n = existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : 0;
    return Number.isInteger(n) ? n : 0;
  }

  private bump(): void {
    const file = statePaths(this.dir).serial;
    writeFileSync(`${file}.tmp`, `${this.serial() + 1}\n`, { mode: 0o644 });
    renameSync(`${file}.tmp`, file);
  }

  /**
   * Runs `fn` holding the state lock: one holder at a time in this process (a queue) and across
   * processes (flock on `<stateDir>/lock`, released by the kernel when its holder dies).
   */
  async withLock<T>(fn: () => Promise<T>, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    const file = statePaths(this.dir).lock;
    return inProcessTurn(file, async () => {
      this.ensureDirs();
      const lock = await FileLock.acquire(file, process.argv.slice(1).join(' '), {
        timeoutMs: options.timeoutMs ?? 120_000,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      try {
        return await fn();
      } finally {
        lock.release();
      }
    });
  }

  /**
   * The CLI's command lock: taken at once or not at all (LOCKED naming the holder's pid and
   * command), so a second `virtwire apply` says who is busy instead of waiting.
   */
  async withCommandLock<T>(command: string, fn: () => Promise<T>, options: CommandLockOptions = {}): Promise<T> {
    this.ensureDirs();
    const file = statePaths(this.dir).commandLock;
    const shared = options.shared === true;
    let lock = FileLock.tryAcquire(file, command, { shared });
    if (!lock && options.timeoutMs) {
      options.onWait?.(FileLock.holder(file));
      lock = await FileLock.acquire(file, command, { timeoutMs: options.timeoutMs, shared });
    }
    if (!lock) throw lockedError(file);
    try {
      return await fn();
    } finally {
      lock.release();
    }
  }

  async commandLockHolder(): Promise<{ locked: boolean; holder?: LockHolder }> {
    const file = statePaths(this.dir).commandLock;
    if (!existsSync(file)) return { locked: false };
    const probe = FileLock.tryAcquire(file, 'virtwire lock probe', { shared: true });
    probe?.release();
    const holder = FileLock.holder(file);
    return { locked: probe === undefined, ...(holder ? { holder } : {}) };
  }

  /**
   * The lock is flock(2): the kernel releases it when its holder exits or is killed, so it is
   * never stale — there is nothing to break. A lock held by a live process stays held (stop that
   * process: it is the one changing the state); otherwise this says so.
   */
  async forceUnlock(id: number): Promise<string> {
    const { locked, holder } = await this.commandLockHolder();
    if (!locked)
      return `the state in ${this.dir} is not locked (locks of processes that died are released by the kernel)`;
    if (holder?.pid !== id)
      throw new VirtwireError('NOT_FOUND', `the lock's ID is ${holder?.pid ?? 'unknown'}, not ${id}`);
    throw new VirtwireError(
      'LOCKED',
      `lock ${id} is held by live process ${id} running "${holder.command}" since ${holder.since}: it cannot be broken; stop that process (kill ${id}) and its lock goes with it`,
    );
  }
}

/** Atomic and durable: temp file, fsync, rename over the old one, fsync of the directory. */
function writeDurably(dir: string, file: string, value: unknown, mode = 0o600): void {
  rmSync(`${file}.tmp`, { force: true });
  const fd = openSync(`${file}.tmp`, 'w', mode);
  try {
    writeSync(fd, JSON.stringify(value, null, 2) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(`${file}.tmp`, file);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
