// Security groups through the library: put (create or replace), delete, list. A group lives in
// the state dir; putting one re-applies every host where its tenant has VMs, under the state lock
// (the rules change live: no guest is touched, and flows the new rules deny are cut there).
import type { ResolvedSecurityGroup, ResolvedVm } from '../../../types/resolved.js';
import type { SecurityGroupSpec } from '../../../types/spec.js';
import { SpecError } from '../../errors/index.js';
import { Problems, checkSecurityReferences, validateSecurityGroup } from '../../spec/index.js';
import type { EngineDeps } from '../deps.js';
import { applyTenantHosts } from '../reconcile.js';
import type { StateStore } from '../state/store.js';
import { bind, type ScopeOptions } from './scope.js';

/** The NICs of the state's VMs as reference checks see them (paths name the VM). */
function recordNics(state: StateStore): { tenant: string; groups: string[]; path: string }[] {
  return state.records().flatMap((r) =>
    r.vm.nics.map((n) => ({
      tenant: n.network.tenant,
      groups: n.securityGroups ?? [],
      path: `vms.${r.vm.name}.nics[${n.index}].securityGroups`,
    })),
  );
}

/** A VM's NICs name groups of the state, of their own tenants: else a SpecError, before any change. */
export function checkVmGroups(state: StateStore, vm: ResolvedVm): void {
  const groups = state.securityGroups().map((g) => ({ group: g, path: `(state) securityGroups.${g.name}` }));
  const nics = vm.nics.map((n, i) => ({
    tenant: n.network.tenant,
    groups: n.securityGroups ?? [],
    path: `nics[${i}].securityGroups`,
  }));
  const p = new Problems();
  checkSecurityReferences(p, groups, nics);
  p.throwIfAny(`VM spec for ${vm.name}`);
}

export async function putSecurityGroup(
  deps: EngineDeps,
  spec: SecurityGroupSpec,
  options: ScopeOptions = {},
): Promise<ResolvedSecurityGroup> {
  const group = validateSecurityGroup(spec);
  const { state, hosts } = await bind(deps, options);
  return state.withLock(async () => {
    const others = state.securityGroups().filter((g) => g.name !== group.name);
    const p = new Problems();
    // its peers exist in its tenant; the NICs that name it (and other groups' peers) still fit
    checkSecurityReferences(
      p,
      [{ group, path: '' }, ...others.map((g) => ({ group: g, path: `securityGroups.${g.name}` }))],
      recordNics(state),
    );
    p.throwIfAny(`security group ${group.name}`);
    await state.putSecurityGroup(group);
    await applyTenantHosts(state, hosts, new Set([group.tenant]));
    return group;
  });
}

/** Deletes a group no NIC and no other group's rule names (a SpecError names them otherwise). */
export async function deleteSecurityGroup(
  deps: EngineDeps,
  name: string,
  options: ScopeOptions = {},
): Promise<boolean> {
  const { state } = await bind(deps, options);
  return state.withLock(async () => {
    if (!state.securityGroups().some((g) => g.name === name)) return false;
    const users = [
      ...recordNics(state)
        .filter((n) => n.groups.includes(name))
        .map((n) => ({ path: n.path, message: `still names security group ${name}` })),
      ...state.securityGroups().flatMap((g) =>
        g.rules.flatMap((r, i) =>
          'group' in r.peer && r.peer.group === name && g.name !== name
            ? [
                {
                  path: `securityGroups.${g.name}.rules[${i}].peer.group`,
                  message: `still names ${name} as its peer`,
                },
              ]
            : [],
        ),
      ),
    ];
    if (users.length) throw new SpecError(users, `deletion of security group ${name}`);
    await state.removeSecurityGroup(name);
    return true;
  });
}

export async function listSecurityGroups(
  deps: EngineDeps,
  options: ScopeOptions = {},
): Promise<ResolvedSecurityGroup[]> {
  return (await bind(deps, options)).state.securityGroups();
}
