// Observing what is really there — each host's libvirt domains and the drift of its host plane
// from the recorded state — and planning a spec file against it (Terraform's plan).
import type { HostPlan } from '../../host/index.js';
import type { EngineDeps } from '../deps.js';
import { withHypervisor } from '../hosts.js';
import { hostStateFor } from '../host-state.js';
import { planChanges, type Observed, type Plan } from '../plan.js';
import type { SpecFile } from '../spec-file.js';
import type { VmRecord } from '../state/store.js';
import { bind, type ScopeOptions } from './scope.js';

/** HostPlans of several hosts as one (drift is attributed per tenant by the typed changes). */
export function mergePlans(plans: HostPlan[]): HostPlan {
  return {
    changes: plans.flatMap((p) => p.changes),
    ip: plans.flatMap((p) => p.ip),
    bridge: plans.flatMap((p) => p.bridge),
    firewall: plans.flatMap((p) => p.firewall),
    tc: plans.flatMap((p) => p.tc),
  };
}

export async function observe(deps: EngineDeps, options: ScopeOptions = {}, given?: VmRecord[]): Promise<Observed> {
  const { state, hosts, scope } = bind(deps, options);
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
    plans.push(await ctx.plane.plan(hostStateFor(records, ctx)));
  }
  return { domains, host: mergePlans(plans) };
}

export async function plan(deps: EngineDeps, spec: SpecFile, options: ScopeOptions = {}): Promise<Plan> {
  const scoped = { ...options, ...((options.hosts ?? spec.hosts) ? { hosts: options.hosts ?? spec.hosts } : {}) };
  const records = bind(deps, scoped).state.records();
  return planChanges(spec, records, await observe(deps, scoped, records));
}
