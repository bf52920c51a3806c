// The state dir's record of the VMs virtwire made: <stateDir>/vms/<name>/vm.json. The host
// plane's desired state is derived from all records, so the records are the source of truth for
// what this host should look like.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, openSync, writeSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { ResolvedVm } from '../../types/resolved.js';
import type { HostState, HostNetwork } from '../../types/host.js';
import type { HostTarget } from '../../types/vm.js';
import { vmPaths } from '../xml/index.js';

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
}

export function readRecords(stateDir: string): VmRecord[] {
  const dir = join(stateDir, 'vms');
  if (!existsSync(dir)) return [];
  const records: VmRecord[] = [];
  for (const name of readdirSync(dir).sort()) {
    const file = join(dir, name, 'vm.json');
    if (existsSync(file)) records.push(migrate(JSON.parse(readFileSync(file, 'utf8')) as VmRecord, file));
  }
  return records;
}

/** Version 0 (no `version` field) had no other difference: the migration stamps it. */
function migrate(record: VmRecord, file: string): VmRecord {
  const version = record.version ?? 0;
  if (version > RECORD_VERSION) throw new Error(`${file} was written by a newer virtwire (record version ${version}; this one reads up to ${RECORD_VERSION})`);
  return { ...record, version: RECORD_VERSION };
}

/** Atomic and durable: temp file, fsync, rename over the old one, fsync of the directory. */
export function writeRecord(stateDir: string, record: VmRecord): void {
  const { dir } = vmPaths(stateDir, record.vm.name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const file = join(dir, 'vm.json');
  const fd = openSync(`${file}.tmp`, 'w', 0o644);
  try {
    writeSync(fd, JSON.stringify({ ...record, version: RECORD_VERSION }, null, 2) + '\n');
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

/** Removes the VM's record and every file under its directory (disks, seed, serial log). */
export function removeVmDir(stateDir: string, name: string): void {
  rmSync(vmPaths(stateDir, name).dir, { recursive: true, force: true });
}

/** The host plane's desired state: one network per tenant, one tap per NIC. */
export function hostStateOf(records: VmRecord[]): HostState {
  const byTenant = new Map<string, HostNetwork>();
  for (const { vm } of records) {
    for (const nic of vm.nics) {
      const tenant = nic.network.tenant;
      let net = byTenant.get(tenant);
      if (!net) byTenant.set(tenant, (net = { network: nic.network, ports: [] }));
      net.ports.push({
        name: nic.tap,
        kind: 'tap',
        mac: nic.mac,
        ...(nic.ip ? { ip: nic.ip } : {}),
        hostname: nic.index === 0 ? vm.name : `${vm.name}-nic${nic.index}`.slice(0, 31),
        ...(nic.qos ? { qos: nic.qos } : {}),
      });
    }
  }
  return { networks: [...byTenant.values()].sort((a, b) => a.network.tenant.localeCompare(b.network.tenant)) };
}
