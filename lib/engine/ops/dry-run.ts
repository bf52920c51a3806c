// What apply would run, read-only: each host plane's exact batches for the end state, the
// hypervisor calls and the disk commands. Nothing changes.
import type { HostPlan } from '../../host/index.js';
import type { EngineDeps } from '../deps.js';
import { hostStateFor } from '../records-to-host.js';
import { groupsAfter, type Plan } from '../plan.js';
import { vmPaths } from '../state/paths.js';
import type { VmRecord } from '../state/store.js';
import { bind, type ScopeOptions } from './scope.js';
import { mergePlans } from './observe.js';

export interface DryRun {
  host: HostPlan;
  libvirt: string[];
  disks: string[];
}

export async function dryRun(deps: EngineDeps, p: Plan, options: ScopeOptions = {}): Promise<DryRun> {
  const { state, hosts } = await bind(deps, options);
  const records = state.records();
  const removed = new Set(
    p.changes.filter((c) => c.kind === 'vm' && (c.action === 'delete' || c.action === 'replace')).map((c) => c.name),
  );
  const changed = new Map(p.changes.filter((c) => c.vm).map((c) => [c.name, c.vm!]));
  const after: VmRecord[] = [
    ...records.filter((r) => !removed.has(r.vm.name)).map((r) => ({ ...r, vm: changed.get(r.vm.name) ?? r.vm })),
    // a new VM without a host is placed at apply time (by free memory): its host is not known yet
    ...p.changes
      .filter((c) => c.vm && (c.action === 'create' || c.action === 'replace'))
      .map((c) => ({ vm: c.vm!, accel: 'tcg' as const, createdAt: '', ...(c.vm!.host ? { host: c.vm!.host } : {}) })),
  ];
  const contexts = hosts.all(records);
  const plans: HostPlan[] = [];
  const groups = groupsAfter(state.securityGroups(), p);
  for (const ctx of contexts.values()) plans.push(await ctx.plane.plan(hostStateFor(after, ctx, groups)));
  const libvirt: string[] = [];
  const disks: string[] = [];
  for (const c of p.changes.filter((c) => c.kind === 'vm')) {
    const at = c.vm?.host ? ` on ${c.vm.host}` : '';
    if (c.action === 'delete' || c.action === 'replace')
      libvirt.push(`virDomainDestroy(${c.name}) if running`, `virDomainUndefineFlags(${c.name}, MANAGED_SAVE|NVRAM)`);
    if (c.action === 'create' || c.action === 'replace' || c.repair === 'recreate') {
      libvirt.push(`virDomainDefineXML(${c.name})${at}`, `virDomainCreate(${c.name})${at}`);
      const files = vmPaths(contexts.get(c.vm?.host)?.stateDir ?? state.dir, c.name);
      if (c.vm && 'image' in c.vm.boot)
        disks.push(`qemu-img create -q -f qcow2 -F <base format> -b ${c.vm.boot.image} ${files.overlay}${at}`);
      if (c.vm?.cloudInit) disks.push(`xorriso -as genisoimage … -output ${files.seedIso} -volid cidata${at}`);
    }
    if (c.repair === 'start') libvirt.push(`virDomainCreate(${c.name})`);
  }
  return { host: mergePlans(plans), libvirt, disks };
}
