// The engine: every operation on VMs and tenant networks is a method here, and each receives
// the same collaborators (deps.ts) from the composition root. The methods are thin: each
// operation lives in its own module under ops/, a function of (deps, …).
import { injectable, inject } from 'tsyringe';
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
import type { NicSpec, VmSpec } from '../../types/spec.js';
import type { Subscription } from '../libvirt/index.js';
import type {
  Clock,
  Connector,
  EngineDeps,
  KvmProbe,
  Logger,
  PlaneFactory,
  RunnerFactory,
  StateFactory,
} from './deps.js';
import { TOKENS } from './tokens.js';
import type { Observed, Plan } from './plan.js';
import type { SpecFile } from './spec-file.js';
import type { ScopeOptions } from './ops/scope.js';
import { createVm } from './ops/create.js';
import { createVms } from './ops/create-many.js';
import { destroyVm } from './ops/destroy.js';
import { observe, plan, type PlanCallOptions } from './ops/observe.js';
import { forgetVm, refreshState, renameVm } from './ops/state-ops.js';
import { deleteSecurityGroup, listSecurityGroups, putSecurityGroup } from './ops/security-groups.js';
import type { SecurityGroupSpec } from '../../types/spec.js';
import type { ResolvedSecurityGroup } from '../../types/resolved.js';
import { applyPlan, destroyAll, type ApplyOptions } from './ops/converge.js';
import { dryRun, type DryRun } from './ops/dry-run.js';
import { importDomain } from './ops/import.js';
import { getVm, listVms, rebootVm, startVm, stopVm } from './ops/lifecycle.js';
import { attachNic, detachNic, updateVm } from './ops/update.js';
import { openConsole } from './ops/console.js';
import { deleteSnapshot, listSnapshots, revertVm, snapshotVm, type SnapshotSpec } from './ops/snapshots.js';
import { onVmEvent } from './ops/events.js';

@injectable()
export class Engine {
  readonly deps: EngineDeps;

  constructor(
    @inject(TOKENS.Connect) connect: Connector,
    @inject(TOKENS.Runners) runners: RunnerFactory,
    @inject(TOKENS.Planes) planes: PlaneFactory,
    @inject(TOKENS.State) state: StateFactory,
    @inject(TOKENS.Kvm) kvm: KvmProbe,
    @inject(TOKENS.Clock) clock: Clock,
    @inject(TOKENS.Log) log: Logger,
  ) {
    this.deps = { connect, runners, planes, state, kvm, clock, log };
  }

  create(spec: unknown, options?: CreateVmOptions): Promise<CreatedVm> {
    return createVm(this.deps, spec, options);
  }

  createMany(specs: VmSpec[], options?: CreateVmsOptions): Promise<CreatedVm[]> {
    return createVms(this.deps, specs, options);
  }

  destroy(name: string, options?: DestroyVmOptions): Promise<boolean> {
    return destroyVm(this.deps, name, options);
  }

  observe(options?: ScopeOptions): Promise<Observed> {
    return observe(this.deps, options);
  }

  plan(spec: SpecFile, options?: PlanCallOptions): Promise<Plan> {
    return plan(this.deps, spec, options);
  }

  apply(p: Plan, options?: ApplyOptions): Promise<CreatedVm[]> {
    return applyPlan(this.deps, p, options);
  }

  dryRun(p: Plan, options?: ScopeOptions): Promise<DryRun> {
    return dryRun(this.deps, p, options);
  }

  destroyAll(options?: ScopeOptions & { report?: (name: string) => void }): Promise<string[]> {
    return destroyAll(this.deps, options);
  }

  import(domain: string, as: string, options?: ScopeOptions): Promise<ImportedVm> {
    return importDomain(this.deps, domain, as, options);
  }

  listVms(options?: VmOptions): Promise<VmInfo[]> {
    return listVms(this.deps, options);
  }

  getVm(name: string, options?: VmOptions): Promise<VmInfo | null> {
    return getVm(this.deps, name, options);
  }

  startVm(name: string, options?: VmOptions & { waitForLease?: boolean }): Promise<VmInfo> {
    return startVm(this.deps, name, options);
  }

  stopVm(name: string, options?: StopOptions): Promise<{ graceful: boolean }> {
    return stopVm(this.deps, name, options);
  }

  rebootVm(name: string, options?: StopOptions): Promise<{ graceful: boolean }> {
    return rebootVm(this.deps, name, options);
  }

  updateVm(spec: unknown, options?: UpdateOptions): Promise<UpdateResult> {
    return updateVm(this.deps, spec, options);
  }

  attachNic(name: string, nic: NicSpec, options?: VmOptions): Promise<CreatedNic> {
    return attachNic(this.deps, name, nic, options);
  }

  detachNic(name: string, mac: string, options?: VmOptions): Promise<void> {
    return detachNic(this.deps, name, mac, options);
  }

  openConsole(name: string, options?: VmOptions): Promise<Duplex> {
    return openConsole(this.deps, name, options);
  }

  snapshotVm(name: string, snap: SnapshotSpec | string, options?: VmOptions): Promise<SnapshotSummary> {
    return snapshotVm(this.deps, name, snap, options);
  }

  revertVm(name: string, snap: string, options?: VmOptions): Promise<void> {
    return revertVm(this.deps, name, snap, options);
  }

  listSnapshots(name: string, options?: VmOptions): Promise<SnapshotSummary[]> {
    return listSnapshots(this.deps, name, options);
  }

  deleteSnapshot(name: string, snap: string, options?: VmOptions): Promise<void> {
    return deleteSnapshot(this.deps, name, snap, options);
  }

  onVmEvent(handler: (event: VmEvent) => void, options?: VmOptions): Promise<Subscription> {
    return onVmEvent(this.deps, handler, options);
  }

  forgetVm(name: string, options?: VmOptions): Promise<void> {
    return forgetVm(this.deps, name, options);
  }

  renameVm(from: string, to: string, options?: VmOptions): Promise<void> {
    return renameVm(this.deps, from, to, options);
  }

  refresh(options?: VmOptions): Promise<{ checked: string[]; removed: string[] }> {
    return refreshState(this.deps, options);
  }

  putSecurityGroup(group: SecurityGroupSpec, options?: ScopeOptions): Promise<ResolvedSecurityGroup> {
    return putSecurityGroup(this.deps, group, options);
  }

  deleteSecurityGroup(name: string, options?: ScopeOptions): Promise<boolean> {
    return deleteSecurityGroup(this.deps, name, options);
  }

  listSecurityGroups(options?: ScopeOptions): ResolvedSecurityGroup[] {
    return listSecurityGroups(this.deps, options);
  }
}
