// Observing what is really there — each host's libvirt domains and the drift of its host plane
// from the recorded state — and planning a spec file against it (Terraform's plan).
import type { HostPlan } from '../../host/index.js';
import type { EngineDeps } from '../deps.js';
import { withHypervisor } from '../hosts.js';
import { hostStateFor } from '../records-to-host.js';
import { planChanges, type Observed, type Plan, type PlanOptions } from '../plan.js';
import { Problems } from '../../spec/index.js';
import type { SpecFile } from '../spec-file.js';
import type { VmRecord } from '../state/store.js';
import { bind, type ScopeOptions } from './scope.js';

/** HostPlans of several hosts as one (drift is attributed per tenant by the typed changes). */
export function mergePlans(plans: HostPlan[]): HostPlan {
  return {
    changes: plans.flatMap((p) => p.changes),
    ip: plans.flatMap((p) => p.ip),
    bridge: plans.flatMap((p) => p.bridge),
    sysctl: plans.flatMap((p) => p.sysctl),
    firewall: plans.flatMap((p) => p.firewall),
    tc: plans.flatMap((p) => p.tc),
    conntrack: plans.flatMap((p) => p.conntrack),
    namespaces: plans.flatMap((p) => p.namespaces),
  };
}

export async function observe(deps: EngineDeps, options: ScopeOptions = {}, given?: VmRecord[]): Promise<Observed> {
  const { state, hosts, scope } = await bind(deps, options);
  const records = given ?? state.records();
  const domains = new Map<string, string>();
  const plans: HostPlan[] = [];
  for (const [name, ctx] of hosts.all(records)) {
    // without hosts, every domain of this machine counts; with hosts, each VM's state on its own host
    const all = name === undefined && scope.hosts.length === 0;
    const here = new Set(records.filter((r) => r.host === name).map((r) => r.vm.name));
    await withHypervisor(deps.connect, ctx.uri, async (hv) => {
      for (const d of await hv.listDomains()) if (all || here.has(d.name)) domains.set(d.name, d.state);
    });
    plans.push(await ctx.plane.plan(hostStateFor(records, ctx, state.securityGroups())));
  }
  return { domains, host: mergePlans(plans) };
}

export interface PlanCallOptions extends ScopeOptions, PlanOptions {
  /** false: plan against the state alone, without asking the hosts (Terraform's -refresh=false) */
  refresh?: boolean;
}

export async function plan(deps: EngineDeps, spec: SpecFile, options: PlanCallOptions = {}): Promise<Plan> {
  const scoped = { ...options, ...((options.hosts ?? spec.hosts) ? { hosts: options.hosts ?? spec.hosts } : {}) };
  const { state } = await bind(deps, scoped);
  const records = state.records();
  const groups = state.securityGroups();
  const p = new Problems();
  const vms = new Set([...spec.vms.map((v) => v.name), ...records.map((r) => r.vm.name)]);
  const tenants = new Set(
    [...spec.vms, ...records.map((r) => r.vm)].flatMap((v) => v.nics.map((n) => n.network.tenant)),
  );
  const groupNames = new Set([...(spec.securityGroups ?? []), ...groups].map((g) => g.name));
  (options.targets ?? []).forEach((t, i) => {
    if (!vms.has(t) && !tenants.has(t) && !groupNames.has(t))
      p.add(`target[${i}]`, `${t} is neither a VM, a tenant network nor a security group of the spec or the state`);
  });
  (options.replace ?? []).forEach((r, i) => {
    if (!spec.vms.some((v) => v.name === r)) p.add(`replace[${i}]`, `${r} is not a VM of the spec`);
  });
  p.throwIfAny('plan options');
  const observed: Observed =
    options.refresh === false
      ? { domains: new Map(records.map((r) => [r.vm.name, 'running'])), host: mergePlans([]) }
      : await observe(deps, scoped, records);
  return planChanges(spec, records, observed, options, groups);
}
