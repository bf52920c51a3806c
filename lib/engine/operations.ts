// Every operation of the engine, once: each is a function of (deps, …) in its own module under
// ops/. The Engine binds them to its collaborators and the public API forwards to the default
// engine's, so an operation's signature is written in one place.
import type { EngineDeps } from './deps.js';
import type { ScopeOptions } from './ops/scope.js';
import { createVm } from './ops/create.js';
import { createVms } from './ops/create-many.js';
import { destroyVm } from './ops/destroy.js';
import { observe, plan } from './ops/observe.js';
import { forgetVm, refreshState, renameVm } from './ops/state-ops.js';
import { deleteSecurityGroup, listSecurityGroups, putSecurityGroup } from './ops/security-groups.js';
import { applyPlan, destroyAll } from './ops/converge.js';
import { dryRun } from './ops/dry-run.js';
import { importDomain } from './ops/import.js';
import { getVm, listVms, rebootVm, startVm, stopVm } from './ops/lifecycle.js';
import { attachNic, detachNic, updateVm } from './ops/update.js';
import { openConsole } from './ops/console.js';
import { deleteSnapshot, listSnapshots, revertVm, snapshotVm } from './ops/snapshots.js';
import { onVmEvent } from './ops/events.js';

const OPERATIONS = {
  createVm,
  createVms,
  destroyVm,
  plan,
  apply: applyPlan,
  dryRun,
  destroy: destroyAll,
  // the public observe takes no records of its own (plan's does)
  observe: (deps: EngineDeps, options?: ScopeOptions) => observe(deps, options),
  importDomain,
  listVms,
  getVm,
  startVm,
  stopVm,
  rebootVm,
  updateVm,
  attachNic,
  detachNic,
  openConsole,
  snapshotVm,
  revertVm,
  listSnapshots,
  deleteSnapshot,
  onVmEvent,
  forgetVm,
  renameVm,
  refresh: refreshState,
  putSecurityGroup,
  deleteSecurityGroup,
  listSecurityGroups,
};

type Table = typeof OPERATIONS;

/** An operation with its collaborators bound: the arguments after `deps`. */
type Bound<F> = F extends (deps: EngineDeps, ...args: infer A) => infer R ? (...args: A) => R : never;

/** The engine's operations, bound to one engine's collaborators. */
export type Operations = { [K in keyof Table]: Bound<Table[K]> };

export function bindOperations(deps: EngineDeps): Operations {
  const bound = Object.entries(OPERATIONS).map(([name, op]) => [
    name,
    (...args: unknown[]) => (op as (d: EngineDeps, ...a: unknown[]) => unknown)(deps, ...args),
  ]);
  return Object.fromEntries(bound) as Operations;
}
