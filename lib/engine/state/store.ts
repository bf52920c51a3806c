// What virtwire remembers about the VMs it made, wherever it is kept: a directory on this machine
// (dir-store.ts, the default) or a PostgreSQL database many operators share (pg-store.ts). The
// host planes' desired state is derived from all records, so the records are the source of truth
// for what every host should look like; they change only under the state lock.
//
// Reads are synchronous, from what the store holds: the directory's files, or the snapshot a
// PostgreSQL store loaded when the call began and again each time it takes the lock. Writes are
// made under the lock and are durable when their promise resolves.
import type { ImageBootRecord } from '../kernel/image-boot.js';
import type { ResolvedSecurityGroup, ResolvedVm } from '../../../types/resolved.js';
import type { HostTarget } from '../../../types/vm.js';
import { VirtwireError } from '../../errors/index.js';
import type { LockHolder } from '../../host/index.js';
import type { VmPaths } from './paths.js';

/** The record format; records written by older versions are migrated when read. */
export const RECORD_VERSION = 1;

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
  /** the initrd QEMU loads instead of the spec's or the image's: its archives uncompressed (fast boot) */
  initrd?: string;
  /** a disk image booted directly: the rest of what its GRUB config boots (see image-boot.ts) */
  imageBoot?: ImageBootRecord;
}

export interface StateStore {
  /** this machine's directory for per-host files (disks, seeds, serial logs, kernel cache) */
  readonly dir: string;
  /** where the records live, for messages: the directory, or the database URL without its password */
  readonly where: string;
  vmPaths(name: string): VmPaths;
  /** Reads the records again (a database's snapshot; a directory is always read live). */
  load(): Promise<void>;
  records(): VmRecord[];
  get(name: string): VmRecord | undefined;
  securityGroups(): ResolvedSecurityGroup[];
  /** counts every change of the state (a saved plan is stale when it moved on) */
  serial(): number;
  put(record: VmRecord): Promise<void>;
  /** Removes the VM's record and every file under its directory here (disks, seed, serial log). */
  remove(name: string): Promise<void>;
  /** Forgets a VM's record only: its directory (disks, serial log) stays where it is. */
  forget(name: string): Promise<void>;
  putSecurityGroup(group: ResolvedSecurityGroup): Promise<void>;
  removeSecurityGroup(name: string): Promise<void>;
  /**
   * Proves the state can still be written before a host is changed: a store that lost its
   * database (restart, partition) throws here, so no host changes that could not be recorded.
   */
  check(): Promise<void>;
  /** Runs `fn` holding the state lock: one holder at a time across processes and machines. */
  withLock<T>(fn: () => Promise<T>, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<T>;
  /** The CLI's command lock: taken at once or not at all (LOCKED naming the holder). */
  withCommandLock<T>(command: string, fn: () => Promise<T>, options?: CommandLockOptions): Promise<T>;
  /** Who holds the command lock, if anyone. */
  commandLockHolder(): Promise<{ locked: boolean; holder?: LockHolder }>;
  /**
   * Terraform's force-unlock: ends the holder's hold where the backend can (a database session),
   * else explains why nothing needs breaking. Returns what it did.
   */
  forceUnlock(id: number): Promise<string>;
  /** Lets go of connections (a directory has none). */
  close(): Promise<void>;
}

export interface CommandLockOptions {
  /** a reader's lock (plan, show): many at once, none while a command changes the state */
  shared?: boolean;
  /** wait this long for it (Terraform's -lock-timeout); default: at once or LOCKED */
  timeoutMs?: number;
  /** told once, when the lock is busy and the wait begins: who holds it */
  onWait?: (holder: LockHolder | undefined) => void;
}

/** Version 0 (no `version` field) had no other difference: the migration stamps it. */
export function migrateRecord(record: VmRecord, where: string): VmRecord {
  const version = record.version ?? 0;
  if (version > RECORD_VERSION) {
    throw new VirtwireError(
      'STATE_INVALID',
      `${where} was written by a newer virtwire (record version ${version}; this one reads up to ${RECORD_VERSION})`,
    );
  }
  return { ...record, version: RECORD_VERSION };
}

// One queue per lock in this process: holders hand over at once instead of polling the
// cross-process lock against each other.
const queues = new Map<string, Promise<void>>();

/** Runs `fn` after every earlier holder of `key` in this process. */
export async function inProcessTurn<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = queues.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const tail = prev.then(() => mine);
  queues.set(key, tail);
  await prev;
  try {
    return await fn();
  } finally {
    release();
    if (queues.get(key) === tail) queues.delete(key);
  }
}
