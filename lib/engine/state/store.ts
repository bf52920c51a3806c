// The state dir's records of the VMs virtwire made, and its locks. The host planes' desired
// state is derived from all records, so the records are the source of truth for what every host
// should look like; they change only under the state lock.
import type { ImageBootRecord } from '../kernel/image-boot.js';
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
import type { ResolvedSecurityGroup, ResolvedVm } from '../../../types/resolved.js';
import type { HostTarget } from '../../../types/vm.js';
import { VirtwireError } from '../../errors/index.js';
import { FileLock, lockedError, type LockHolder } from '../../host/index.js';
import { statePaths, vmPaths, type VmPaths } from './paths.js';

/** The record format; records written by older versions are migrated when read. */
const RECORD_VERSION = 1;

export interface VmRecord {
  version?: number;
  vm: ResolvedVm;
  accel: 'kvm' | 'tcg';
  createdAt: string;
  /** the host it runs on (createVm's `hosts`); absent: this machine */
  host?: string;
  /** how that host was reached when the VM was made (so destroy and plan need no hosts list) */
  hostTarget?: HostTarget;
  /**
   * the kernel QEMU boots when it is not the spec's own: virtwire's extracted vmlinux (fast boot),
   * or a disk image's own kernel (booted directly)
   */
  kernel?: string;
  /** a disk image booted directly: the rest of what its GRUB config boots (see image-boot.ts) */
  imageBoot?: ImageBootRecord;
}

// One queue per lock file in this process: holders hand over at once instead of polling the
// kernel lock against each other.
const queues = new Map<string, Promise<void>>();

export class StateStore {
  constructor(readonly dir: string) {}

  vmPaths(name: string): VmPaths {
    return vmPaths(this.dir, name);
  }

  records(): VmRecord[] {
    const { vms } = statePaths(this.dir);
    if (!existsSync(vms)) return [];
    const records: VmRecord[] = [];
    for (const name of readdirSync(vms).sort()) {
      const file = this.vmPaths(name).record;
      if (existsSync(file)) records.push(migrate(JSON.parse(readFileSync(file, 'utf8')) as VmRecord, file));
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
  put(record: VmRecord): void {
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
  putSecurityGroup(group: ResolvedSecurityGroup): void {
    const paths = statePaths(this.dir);
    this.ensureDirs();
    mkdirSync(paths.securityGroups, { recursive: true, mode: 0o700 });
    writeDurably(paths.securityGroups, paths.securityGroup(group.name), group);
    this.bump();
  }

  removeSecurityGroup(name: string): void {
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
  remove(name: string): void {
    rmSync(this.vmPaths(name).dir, { recursive: true, force: true });
    this.bump();
  }

  /** Forgets a VM's record only: its directory (disks, serial log) stays where it is. */
  forget(name: string): void {
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
    const prev = queues.get(file) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    queues.set(file, tail);
    await prev;
    try {
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
    } finally {
      release();
      if (queues.get(file) === tail) queues.delete(file);
    }
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
}

export interface CommandLockOptions {
  /** a reader's lock (plan, show): many at once, none while a command changes the state */
  shared?: boolean;
  /** wait this long for it (Terraform's -lock-timeout); default: at once or LOCKED */
  timeoutMs?: number;
  /** told once, when the lock is busy and the wait begins: who holds it */
  onWait?: (holder: LockHolder | undefined) => void;
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

/** Version 0 (no `version` field) had no other difference: the migration stamps it. */
function migrate(record: VmRecord, file: string): VmRecord {
  const version = record.version ?? 0;
  if (version > RECORD_VERSION) {
    throw new VirtwireError(
      'STATE_INVALID',
      `${file} was written by a newer virtwire (record version ${version}; this one reads up to ${RECORD_VERSION})`,
    );
  }
  return { ...record, version: RECORD_VERSION };
}
