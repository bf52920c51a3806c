// The engine's public face: each operation forwarded to the default engine (the composition root
// stays internal), the spec file, plans and the state module's defaults.
import type { CreateVmOptions, CreatedVm, KernelCacheEntry, UpdateOptions, UpdateResult } from '../../types/vm.js';
import { GRACE_MS, bootedFiles, listKernels, pruneKernels, type CachedKernel } from './kernel/kernel-cache.js';
import type { VmSpec } from '../../types/spec.js';
import { defaultEngine } from './container.js';
import type { Operations } from './operations.js';
import type { CommandLockOptions, VmRecord } from './state/store.js';
import { openWhere, withState, type StateWhere } from './state/open.js';

/** An operation of the default engine, by name (its signature is the operation's own: operations.ts). */
const forward = <K extends keyof Operations>(name: K): Operations[K] =>
  ((...args: unknown[]) => (defaultEngine().ops[name] as (...a: unknown[]) => unknown)(...args)) as Operations[K];

/** Creates, starts and (by default) waits for the DHCP lease of a VM on its tenants' networks. */
export const createVm: (spec: VmSpec, options?: CreateVmOptions) => Promise<CreatedVm> = forward('createVm');

/**
 * Creates several VMs at once (host-plane work joined), all or nothing: every spec is validated
 * first; if one create fails, the others are destroyed and its error is thrown.
 */
export const createVms = forward('createVms');

/** Stops and removes a VM and everything virtwire made for it; the last VM of a tenant takes its network. */
export const destroyVm = forward('destroyVm');

/** A spec file (loadSpecFile) against the state and what is really on the hosts: Terraform's plan. */
export const plan = forward('plan');

/** Makes a plan true: removals, then creations in parallel, then updates and repairs. */
export const apply = forward('apply');

/** What apply would run (host batches, hypervisor calls, disk commands), changing nothing. */
export const dryRun = forward('dryRun');

/** Removes every VM in the state and whatever virtwire still has on its hosts. */
export const destroy = forward('destroy');

/** Each host's domains and host-plane drift, as plan sees them. */
export const observe = forward('observe');

/** Adopts a shut-off libvirt domain whose NICs are on tenant bridges into the state. */
export const importDomain = forward('importDomain');

/** Every VM in the state, with libvirt's live state ('missing' when its domain is gone). */
export const listVms = forward('listVms');

/** One VM as listVms reports it, or null. */
export const getVm = forward('getVm');

/** Starts a stopped VM on its MACs and IPs (its host plane re-applied first); waits for fresh leases. */
export const startVm = forward('startVm');

/** ACPI shutdown, then power off after `timeoutMs` (at once with `force`); the network and leases stay. */
export const stopVm = forward('stopVm');

/** ACPI reboot, then a reset after `timeoutMs` (at once with `force`). */
export const rebootVm = forward('rebootVm');

/** Changes a VM to a new spec: live where it can be (QoS, NICs, memory), else with `allowRestart`. */
export const updateVm: (spec: VmSpec, options?: UpdateOptions) => Promise<UpdateResult> = forward('updateVm');

/** Hot-plugs a NIC (host plane first) and waits for its lease. */
export const attachNic = forward('attachNic');

/** Unplugs the NIC with this MAC and removes its tap. */
export const detachNic = forward('detachNic');

/** The VM's serial console as a Duplex (read what it prints, write what it reads). */
export const openConsole = forward('openConsole');

/** A snapshot of the VM's qcow2 disks (and memory while it runs). */
export const snapshotVm = forward('snapshotVm');

/** Puts the VM back to a snapshot: its disks, and its running state when the snapshot has memory. */
export const revertVm = forward('revertVm');

export const listSnapshots = forward('listSnapshots');

export const deleteSnapshot = forward('deleteSnapshot');

/** Lifecycle events (started, stopped, crashed, rebooted, …) of the state's VMs on every host. */
export const onVmEvent = forward('onVmEvent');

/** Forgets a VM (its record) without touching its host: Terraform's `state rm`. */
export const forgetVm = forward('forgetVm');

/** Renames a shut-off VM: record, domain, directory, DNS name (UUID, MACs, IPs, taps stay). */
export const renameVm = forward('renameVm');

/** Drops the records of VMs whose domain is gone; changes nothing on a host. */
export const refresh = forward('refresh');

/** Creates or replaces a security group; every host where its tenant has VMs enforces it at once. */
export const putSecurityGroup = forward('putSecurityGroup');

/** Deletes a security group no NIC and no other group names; false when there was none. */
export const deleteSecurityGroup = forward('deleteSecurityGroup');

/** The state's security groups. */
export const listSecurityGroups = forward('listSecurityGroups');

/** The state's serial: it counts every change of the records (saved plans are checked against it). */
export function stateSerial(where?: StateWhere): Promise<number> {
  return withState(where, async (s) => s.serial());
}

/**
 * The host's cache of extracted kernels (fast boot), least recently used first: each with its
 * size, last use and the VMs whose records boot it (those are never evicted).
 */
export function listKernelCache(where?: StateWhere): Promise<KernelCacheEntry[]> {
  return withState(where, async (state) => {
    const records = state.records();
    return listKernels(state.dir).map((k) => entryOf(k, records));
  });
}

/**
 * Evicts cached kernels no record names, least recently used first, until the cache holds at
 * most `maxMiB` (default 0: every one no VM boots). A kernel used in the last ten minutes stays
 * (a create elsewhere may have chosen it and not yet recorded it) unless `includeRecent`.
 */
export function pruneKernelCache(
  options: { stateDir?: string; state?: string; maxMiB?: number; includeRecent?: boolean } = {},
): Promise<KernelCacheEntry[]> {
  // the lock reads the records: no snapshot before it
  const state = openWhere(options);
  return state.withLock(async () => {
    const records = state.records();
    const gone = pruneKernels(
      state.dir,
      (options.maxMiB ?? 0) * 2 ** 20,
      bootedFiles(records),
      options.includeRecent ? 0 : GRACE_MS,
    );
    return gone.map((k) => entryOf(k, records));
  });
}

const entryOf = (k: CachedKernel, records: VmRecord[]): KernelCacheEntry => ({
  path: k.path,
  kind: k.kind,
  hash: k.hash,
  bytes: k.bytes,
  lastUsed: k.lastUsed.toISOString(),
  usedBy: records.filter((r) => bootedFiles([r]).includes(k.path)).map((r) => r.vm.name),
});

/** The VM records of a state. */
export function readState(where?: StateWhere): Promise<VmRecord[]> {
  return withState(where, async (s) => s.records());
}

/**
 * Runs `fn` under the state's command lock: exclusive (apply, destroy…) or `shared` (plan,
 * show), at once or after waiting `timeoutMs`; LOCKED naming the holder otherwise.
 */
export function withCommandLock<T>(
  where: StateWhere,
  command: string,
  fn: () => Promise<T>,
  options?: CommandLockOptions,
): Promise<T> {
  return openWhere(where).withCommandLock(command, fn, options);
}

export { lockInfo, forceUnlock, migrateState, type LockInfo } from './ops/state-ops.js';
export { withState, type StateWhere } from './state/open.js';
export { redactUrl as redactStateUrl } from '../spec/index.js';

export { renderDomainXml, type RenderOptions } from './render.js';
export { loadSpecFile, readSpecText, parseSpecText, formatSpecText, type SpecFile } from './spec-file.js';
export {
  formatPlan,
  redactPlan,
  type Plan,
  type Change,
  type ChangeAction,
  type AttributeChange,
  type Observed,
} from './plan.js';
export { seedFiles } from './seed.js';
export { redactVm } from './secrets.js';
export { DEFAULT_STATE_DIR, DEFAULT_URI, vmPaths, type VmPaths } from './state/paths.js';
export type { VmRecord } from './state/store.js';
export type { ScopeOptions } from './ops/scope.js';
export type { ApplyOptions, ChangeReporter, ChangeStatus } from './ops/converge.js';
export type { PlanCallOptions } from './ops/observe.js';
export type { CommandLockOptions } from './state/store.js';
export type { DryRun } from './ops/dry-run.js';
export type { SnapshotSpec } from './ops/snapshots.js';
