// What a graph is drawn from. Desired: the spec file against the state's records, as plan sees
// it (recorded addresses kept, the rest allocated) — no host is asked. Live: the state's records
// and groups, and what the hosts hold now (libvirt's domains, host-plane drift), as plan observes.
import type { ResolvedSecurityGroup } from '../../types/resolved.js';
import type { HostTarget } from '../../types/vm.js';
import { listSecurityGroups, observe, readState, type ScopeOptions, type SpecFile } from '../engine/index.js';
import { desiredVms, hostDrift } from '../engine/plan.js';
import type { VmRecord } from '../engine/state/store.js';
import type { GraphWorld } from './build.js';

/** The world apply would leave: every VM of the spec on its host, with its addresses. */
export function desiredWorld(spec: SpecFile, records: VmRecord[]): GraphWorld {
  const hosts = spec.hosts ?? [];
  const placed = desiredVms(spec, records).vms.map(({ vm, record }): VmRecord => {
    const host = vm.host; // a recorded VM's host is kept by plan's pinning
    const target = record?.hostTarget ?? hosts.find((h) => h.name === host);
    return {
      vm,
      accel: record?.accel ?? 'tcg',
      createdAt: record?.createdAt ?? '',
      ...(host ? { host } : {}),
      ...(target ? { hostTarget: target } : {}),
    };
  });
  return { view: 'desired', records: placed, hosts, groups: spec.securityGroups ?? [] };
}

/** The world as the state records it and the hosts hold it now, drift marked. */
export async function liveWorld(options: ScopeOptions, spec?: SpecFile): Promise<GraphWorld> {
  const records = await readState(options);
  const hosts = options.hosts ?? spec?.hosts ?? recordedHosts(records);
  const groups: ResolvedSecurityGroup[] = await listSecurityGroups(options);
  const observed = await observe({ ...options, ...(hosts.length ? { hosts } : {}) });
  const tenants = new Set(records.flatMap((r) => r.vm.nics.map((n) => n.network.tenant)));
  return {
    view: 'live',
    records,
    hosts,
    groups,
    domains: observed.domains,
    drift: hostDrift(tenants, observed.host),
  };
}

/** The hosts as the records keep them (how each was reached when its VMs were made). */
function recordedHosts(records: VmRecord[]): HostTarget[] {
  const byName = new Map<string, HostTarget>();
  for (const r of records) if (r.hostTarget) byName.set(r.hostTarget.name, r.hostTarget);
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}
