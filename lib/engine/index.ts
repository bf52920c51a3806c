// The engine's public face: thin functions over the default engine (the composition root stays
// internal), the spec file, plans and the state module's defaults.
import type { Duplex } from 'node:stream';
import type {
  CreateVmOptions,
  CreateVmsOptions,
  CreatedNic,
  CreatedVm,
  DestroyVmOptions,
  ImportedVm,
  SnapshotSummary,
  StopOptions,
  UpdateOptions,
  UpdateResult,
  VmEvent,
  VmInfo,
  VmOptions,
} from '../../types/vm.js';
import type { NicSpec, SecurityGroupSpec, VmSpec } from '../../types/spec.js';
import type { ResolvedSecurityGroup } from '../../types/resolved.js';
import type { Subscription } from '../libvirt/index.js';
import type { SnapshotSpec } from './ops/snapshots.js';
import { defaultEngine } from './container.js';
import type { Observed, Plan } from './plan.js';
import type { SpecFile } from './spec-file.js';
import type { ScopeOptions } from './ops/scope.js';
import type { ApplyOptions } from './ops/converge.js';
import type { DryRun } from './ops/dry-run.js';
import { DEFAULT_STATE_DIR } from './state/paths.js';
import { StateStore, type CommandLockOptions, type VmRecord } from './state/store.js';
import type { PlanCallOptions } from './ops/observe.js';

/** Creates, starts and (by default) waits for the DHCP lease of a VM on its tenants' networks. */
export function createVm(spec: VmSpec, options?: CreateVmOptions): Promise<CreatedVm> {
  return defaultEngine().create(spec, options);
}

/**
 * Creates several VMs at once (host-plane work joined), all or nothing: every spec is validated
 * first; if one create fails, the others are destroyed and its error is thrown.
 */
export function createVms(specs: VmSpec[], options?: CreateVmsOptions): Promise<CreatedVm[]> {
  return defaultEngine().createMany(specs, options);
}

/** Stops and removes a VM and everything virtwire made for it; the last VM of a tenant takes its network. */
export function destroyVm(name: string, options?: DestroyVmOptions): Promise<boolean> {
  return defaultEngine().destroy(name, options);
}

/** A spec file (loadSpecFile) against the state and what is really on the hosts: Terraform's plan. */
export function plan(spec: SpecFile, options?: PlanCallOptions): Promise<Plan> {
  return defaultEngine().plan(spec, options);
}

/** Makes a plan true: removals, then creations in parallel, then updates and repairs. */
export function apply(p: Plan, options?: ApplyOptions): Promise<CreatedVm[]> {
  return defaultEngine().apply(p, options);
}

/** What apply would run (host batches, hypervisor calls, disk commands), changing nothing. */
export function dryRun(p: Plan, options?: ScopeOptions): Promise<DryRun> {
  return defaultEngine().dryRun(p, options);
}

/** Removes every VM in the state and whatever virtwire still has on its hosts. */
export function destroy(options?: ScopeOptions & { report?: (name: string) => void }): Promise<string[]> {
  return defaultEngine().destroyAll(options);
}

/** Each host's domains and host-plane drift, as plan sees them. */
export function observe(options?: ScopeOptions): Promise<Observed> {
  return defaultEngine().observe(options);
}

/** Adopts a shut-off libvirt domain whose NICs are on tenant bridges into the state. */
export function importDomain(domain: string, as: string, options?: ScopeOptions): Promise<ImportedVm> {
  return defaultEngine().import(domain, as, options);
}

/** Every VM in the state, with libvirt's live state ('missing' when its domain is gone). */
export function listVms(options?: VmOptions): Promise<VmInfo[]> {
  return defaultEngine().listVms(options);
}

/** One VM as listVms reports it, or null. */
export function getVm(name: string, options?: VmOptions): Promise<VmInfo | null> {
  return defaultEngine().getVm(name, options);
}

/** Starts a stopped VM on its MACs and IPs (its host plane re-applied first); waits for fresh leases. */
export function startVm(name: string, options?: VmOptions & { waitForLease?: boolean }): Promise<VmInfo> {
  return defaultEngine().startVm(name, options);
}

/** ACPI shutdown, then power off after `timeoutMs` (at once with `force`); the network and leases stay. */
export function stopVm(name: string, options?: StopOptions): Promise<{ graceful: boolean }> {
  return defaultEngine().stopVm(name, options);
}

/** ACPI reboot, then a reset after `timeoutMs` (at once with `force`). */
export function rebootVm(name: string, options?: StopOptions): Promise<{ graceful: boolean }> {
  return defaultEngine().rebootVm(name, options);
}

/** Changes a VM to a new spec: live where it can be (QoS, NICs, memory), else with `allowRestart`. */
export function updateVm(spec: VmSpec, options?: UpdateOptions): Promise<UpdateResult> {
  return defaultEngine().updateVm(spec, options);
}

/** Hot-plugs a NIC (host plane first) and waits for its lease. */
export function attachNic(name: string, nic: NicSpec, options?: VmOptions): Promise<CreatedNic> {
  return defaultEngine().attachNic(name, nic, options);
}

/** Unplugs the NIC with this MAC and removes its tap. */
export function detachNic(name: string, mac: string, options?: VmOptions): Promise<void> {
  return defaultEngine().detachNic(name, mac, options);
}

/** The VM's serial console as a Duplex (read what it prints, write what it reads). */
export function openConsole(name: string, options?: VmOptions): Promise<Duplex> {
  return defaultEngine().openConsole(name, options);
}

/** A snapshot of the VM's qcow2 disks (and memory while it runs). */
export function snapshotVm(name: string, snap: SnapshotSpec | string, options?: VmOptions): Promise<SnapshotSummary> {
  return defaultEngine().snapshotVm(name, snap, options);
}

/** Puts the VM back to a snapshot: its disks, and its running state when the snapshot has memory. */
export function revertVm(name: string, snap: string, options?: VmOptions): Promise<void> {
  return defaultEngine().revertVm(name, snap, options);
}

export function listSnapshots(name: string, options?: VmOptions): Promise<SnapshotSummary[]> {
  return defaultEngine().listSnapshots(name, options);
}

export function deleteSnapshot(name: string, snap: string, options?: VmOptions): Promise<void> {
  return defaultEngine().deleteSnapshot(name, snap, options);
}

/** Lifecycle events (started, stopped, crashed, rebooted, …) of the state's VMs on every host. */
export function onVmEvent(handler: (event: VmEvent) => void, options?: VmOptions): Promise<Subscription> {
  return defaultEngine().onVmEvent(handler, options);
}

/** Forgets a VM (its record) without touching its host: Terraform's `state rm`. */
export function forgetVm(name: string, options?: VmOptions): Promise<void> {
  return defaultEngine().forgetVm(name, options);
}

/** Renames a shut-off VM: record, domain, directory, DNS name (UUID, MACs, IPs, taps stay). */
export function renameVm(from: string, to: string, options?: VmOptions): Promise<void> {
  return defaultEngine().renameVm(from, to, options);
}

/** Drops the records of VMs whose domain is gone; changes nothing on a host. */
export function refresh(options?: VmOptions): Promise<{ checked: string[]; removed: string[] }> {
  return defaultEngine().refresh(options);
}

/** Creates or replaces a security group; every host where its tenant has VMs enforces it at once. */
export function putSecurityGroup(group: SecurityGroupSpec, options?: ScopeOptions): Promise<ResolvedSecurityGroup> {
  return defaultEngine().putSecurityGroup(group, options);
}

/** Deletes a security group no NIC and no other group names; false when there was none. */
export function deleteSecurityGroup(name: string, options?: ScopeOptions): Promise<boolean> {
  return defaultEngine().deleteSecurityGroup(name, options);
}

/** The state's security groups. */
export function listSecurityGroups(options?: ScopeOptions): ResolvedSecurityGroup[] {
  return defaultEngine().listSecurityGroups(options);
}

/** The state's serial: it counts every change of the records (saved plans are checked against it). */
export function stateSerial(stateDir: string = DEFAULT_STATE_DIR): number {
  return new StateStore(stateDir).serial();
}

/** The VM records of a state dir. */
export function readState(stateDir: string = DEFAULT_STATE_DIR): VmRecord[] {
  return new StateStore(stateDir).records();
}

/**
 * Runs `fn` under the state dir's command lock: exclusive (apply, destroy…) or `shared` (plan,
 * show), at once or after waiting `timeoutMs`; LOCKED naming the holder otherwise.
 */
export function withCommandLock<T>(
  stateDir: string,
  command: string,
  fn: () => Promise<T>,
  options?: CommandLockOptions,
): Promise<T> {
  return new StateStore(stateDir).withCommandLock(command, fn, options);
}

export { lockInfo, forceUnlock, type LockInfo } from './ops/state-ops.js';

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
