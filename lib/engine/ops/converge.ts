// Making a plan true (Terraform's apply): deletions and replacements' removals first, then
// creations in parallel, then in-place updates' host planes, restarts and network repairs.
import type { CreatedVm, PathPolicy } from '../../../types/vm.js';
import pLimit from 'p-limit';
import { VirtwireError } from '../../errors/index.js';
import type { EngineDeps } from '../deps.js';
import { withHypervisor } from '../hosts.js';
import type { Change, Plan } from '../plan.js';
import { bind, passOn, type ScopeOptions } from './scope.js';
import { createVm } from './create.js';
import { destroyVm } from './destroy.js';
import { reconcileHost } from '../reconcile.js';
import { specOf } from '../spec-of.js';

/** A change's progress: start, a step inside it (createVm's steps), done, failed, or skipped after a stop. */
export type ChangeStatus = 'start' | 'progress' | 'done' | 'failed' | 'skipped';
export type ChangeReporter = (change: Change, status: ChangeStatus, detail?: string) => void;

export interface ApplyOptions extends ScopeOptions {
  report?: ChangeReporter;
  /**
   * Aborting stops the apply gracefully (Terraform's first Ctrl-C): changes not yet begun are
   * skipped, creates under way stop at their next step and roll back what they made.
   */
  signal?: AbortSignal;
  /** at most this many VM creates at once; default 10 */
  parallelism?: number;
  /** directories VMs' files may come from or go to beyond the defaults */
  paths?: PathPolicy;
}

export async function applyPlan(deps: EngineDeps, p: Plan, options: ApplyOptions = {}): Promise<CreatedVm[]> {
  const { state, hosts } = await bind(deps, options);
  const scope = passOn(options, state.dir);
  const records = state.records();
  // updates and restarts stay on the host the VM is recorded on
  const contexts = hosts.all(records);
  const hostOf = new Map(records.map((r) => [r.vm.name, r.host]));
  const ctxOf = (name: string) => contexts.get(hostOf.get(name))!;
  const report = options.report ?? (() => {});
  const stopped = () => options.signal?.aborted === true;
  const step = async (c: Change, fn: () => Promise<unknown>) => {
    if (stopped()) return report(c, 'skipped');
    report(c, 'start');
    try {
      await fn();
      report(c, 'done');
    } catch (e) {
      report(c, 'failed', (e as Error).message);
      throw e;
    }
  };
  const groupChanges = p.changes.filter((c) => c.kind === 'securityGroup');
  // groups first (a new VM may join a new group); each is enforced where its tenant has VMs
  for (const c of groupChanges.filter((c) => c.group)) {
    await step(c, async () => {
      await state.withLock(async () => await state.putSecurityGroup(c.group!));
      const where = new Set(
        state
          .records()
          .filter((r) => r.vm.nics.some((n) => n.network.tenant === c.group!.tenant))
          .map((r) => r.host),
      );
      for (const [name, ctx] of contexts) if (where.has(name)) await reconcileHost(state, ctx);
    });
  }
  const vmChanges = p.changes.filter((c) => c.kind === 'vm');
  for (const c of vmChanges.filter((c) => c.action === 'delete' || c.action === 'replace' || c.repair === 'recreate')) {
    const destroy = () => destroyVm(deps, c.name, { ...scope, missingOk: true });
    if (c.action === 'delete') await step(c, destroy);
    else if (!stopped()) {
      // a replacement or re-creation is one change: its destroy is a step of it
      report(c, 'progress', 'destroy');
      await destroy();
    }
  }
  for (const c of vmChanges.filter((c) => c.action === 'update')) {
    await step(c, async () => {
      await state.withLock(async () => {
        const rec = state.get(c.name)!;
        await state.put({ ...rec, vm: c.vm! });
      });
      await reconcileHost(state, ctxOf(c.name));
    });
  }
  const creates = vmChanges.filter((c) => c.action === 'create' || c.action === 'replace' || c.repair === 'recreate');
  const created: CreatedVm[] = [];
  const limit = pLimit(Math.max(1, options.parallelism ?? 10));
  const create = (c: Change) =>
    step(c, async () => {
      const vm = await createVm(deps, specOf(c.vm!), {
        ...scope,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.paths ? { paths: options.paths } : {}),
        onProgress: (e) => e.status === 'start' && report(c, 'progress', e.step),
      });
      created.push(vm);
    });
  const results = await Promise.allSettled(creates.map((c) => limit(() => create(c))));
  for (const c of vmChanges.filter((c) => c.repair === 'start')) {
    await step(c, () =>
      withHypervisor(deps.connect, ctxOf(c.name).uri, async (hv) => {
        const d = await hv.lookupDomain(c.name);
        await d?.start();
        d?.free();
      }),
    );
  }
  for (const c of p.changes.filter((c) => c.kind === 'network' && c.action === 'repair')) {
    // every host that has a VM on this tenant
    const where = new Set(
      state
        .records()
        .filter((r) => r.vm.nics.some((n) => n.network.tenant === c.name))
        .map((r) => r.host),
    );
    await step(c, async () => {
      for (const [name, ctx] of contexts) if (where.has(name)) await reconcileHost(state, ctx);
    });
  }
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  // groups last: no NIC names them any more (the spec file's checks saw to that)
  for (const c of groupChanges.filter((c) => c.action === 'delete'))
    await step(c, () => state.withLock(async () => await state.removeSecurityGroup(c.name)));
  if (stopped())
    throw new VirtwireError(
      'ABORTED',
      'apply was stopped: changes under way finished or were rolled back; the rest were not begun',
    );
  return created;
}

/** Removes every VM in the state and whatever the host planes still have. */
export async function destroyAll(
  deps: EngineDeps,
  options: ScopeOptions & { report?: (name: string) => void } = {},
): Promise<string[]> {
  const { state, hosts } = await bind(deps, options);
  const records = state.records();
  const contexts = hosts.all(records);
  const scope = passOn(options, state.dir);
  for (const { vm } of records) {
    await destroyVm(deps, vm.name, { ...scope, missingOk: true });
    options.report?.(vm.name);
  }
  await state.withLock(async () => {
    for (const g of state.securityGroups()) await state.removeSecurityGroup(g.name);
  });
  for (const ctx of contexts.values()) await reconcileHost(state, ctx);
  return records.map((r) => r.vm.name);
}
