// Terraform-like planning: the spec file against the state (VM records) *and* what is really
// there (libvirt's domains, the host plane's devices, rules and dnsmasq). Each resource gets a
// change: create, update in place, replace, delete, or repair (drift).
import type { ResolvedVm, ResolvedNic, ResolvedSecurityGroup } from '../../types/resolved.js';
import type { HostPlan } from '../host/index.js';
import { allocate } from './allocate.js';
import { deriveMac, stableUuid, subnetsOverlap, withoutSegmentId } from '../spec/index.js';
import type { VmRecord } from './state/store.js';
import { isSecretPath, redactVm, SENSITIVE } from './secrets.js';
import type { SpecFile } from './spec-file.js';

export type ChangeAction = 'create' | 'update' | 'replace' | 'delete' | 'repair';

export interface AttributeChange {
  name: string;
  from?: unknown;
  to?: unknown;
}

export interface Change {
  kind: 'network' | 'vm' | 'securityGroup';
  name: string;
  action: ChangeAction;
  attributes: AttributeChange[];
  /** why a repair is needed (drift), or what forces a replacement — for people */
  reason?: string;
  /** what a VM repair does — for code: re-create a missing domain, or start a stopped one */
  repair?: 'recreate' | 'start';
  /** the VM as it will be (create/replace/update/repair of a VM) */
  vm?: ResolvedVm;
  /** the security group as it will be (create/update of a group) */
  group?: ResolvedSecurityGroup;
}

export interface Observed {
  /** libvirt domains by name -> state */
  domains: Map<string, string>;
  /** what the host plane would do to converge to the *recorded* state (drift when non-empty) */
  host: HostPlan;
}

export interface Plan {
  changes: Change[];
  summary: Record<ChangeAction, number>;
  /** -target: the names the plan was limited to */
  targets?: string[];
  /** what a person should know about this plan (e.g. targeting in effect) */
  warnings?: string[];
}

// changed in place: tc, the firewall's host services, the NIC's security groups, its forwards or
// floating IP; everything else replaces the VM
export const LIVE_CHANGE = /^nics\[\d+\]\.(qos|network\.hostServices|securityGroups|forwards|floatingIp)(\.|\[|$)/;

function flatten(value: unknown, prefix = '', out: Map<string, unknown> = new Map()): Map<string, unknown> {
  if (Array.isArray(value)) value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  else out.set(prefix, value);
  return out;
}

const attributeDiff = (a: Map<string, unknown>, b: Map<string, unknown>, shown = (_k: string, v: unknown) => v) =>
  [...new Set([...a.keys(), ...b.keys()])]
    .sort()
    .filter((k) => a.get(k) !== b.get(k))
    .map((k) => ({ name: k, from: shown(k, a.get(k)), to: shown(k, b.get(k)) }));

/**
 * Security groups: created and changed before the VMs (a new VM may join a new group), deleted
 * after them; a changed group is an update in place — every host with its members re-applies.
 */
function groupChanges(want: ResolvedSecurityGroup[], have: ResolvedSecurityGroup[]): Change[] {
  const before = new Map(have.map((g) => [g.name, g]));
  const changes: Change[] = [];
  for (const g of want) {
    const old = before.get(g.name);
    const attributes = old ? attributeDiff(flatten(old), flatten(g)) : [];
    if (!old) changes.push({ kind: 'securityGroup', name: g.name, action: 'create', attributes: [], group: g });
    else if (attributes.length)
      changes.push({ kind: 'securityGroup', name: g.name, action: 'update', attributes, group: g });
  }
  for (const g of have)
    if (!want.some((w) => w.name === g.name))
      changes.push({ kind: 'securityGroup', name: g.name, action: 'delete', attributes: [] });
  return changes;
}

/** The state's groups once `p` is applied. */
export function groupsAfter(have: ResolvedSecurityGroup[], p: Plan): ResolvedSecurityGroup[] {
  const out = new Map(have.map((g) => [g.name, g]));
  for (const c of p.changes.filter((c) => c.kind === 'securityGroup')) {
    if (c.group) out.set(c.name, c.group);
    else out.delete(c.name);
  }
  return [...out.values()];
}

/** Attribute-level differences between two VMs, ignoring derived names. */
export function diffVm(from: ResolvedVm, to: ResolvedVm): AttributeChange[] {
  const strip = (vm: ResolvedVm) => ({
    ...vm,
    nics: vm.nics.map(({ network, index: _index, tap: _tap, ...n }: ResolvedNic) => ({
      ...n,
      network: {
        tenant: network.tenant,
        cidr: network.cidr,
        gateway: network.gateway,
        nat: network.nat,
        segment: network.segment,
        uplink: network.uplink,
        hostServices: network.hostServices,
      },
    })),
  });
  // a changed secret is a change, shown without its value
  const shown = (k: string, v: unknown) => (v !== undefined && isSecretPath(k) ? SENSITIVE : v);
  return attributeDiff(flatten(strip(from)), flatten(strip(to)), shown);
}

/**
 * The plan with every secret replaced by a marker: what may be printed or written out. (The plan
 * itself keeps them: applying it creates the VMs.)
 */
export function redactPlan(plan: Plan): Plan {
  return { ...plan, changes: plan.changes.map((c) => (c.vm ? { ...c, vm: redactVm(c.vm) } : c)) };
}

/** Tenants whose host objects differ from the recorded state, with a reason each (from the typed changes). */
export function hostDrift(tenants: Set<string>, host: HostPlan): Map<string, string[]> {
  const drift = new Map<string, string[]>();
  const add = (tenant: string | undefined, why: string) => {
    if (tenant !== undefined && tenants.has(tenant)) drift.set(tenant, [...(drift.get(tenant) ?? []), why]);
  };
  // reasons in a fixed order (devices, QoS, dnsmasq, firewall), whatever order the host planned in
  const order = ['link', 'namespace', 'address', 'qos', 'dnsmasq', 'firewall'];
  for (const c of [...host.changes].sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind))) {
    switch (c.kind) {
      case 'link':
        add(c.tenant, c.action === 'create' ? 'devices missing' : 'device settings differ');
        break;
      case 'qos':
        add(c.tenant, 'QoS differs');
        break;
      case 'namespace':
        add(c.tenant, c.action === 'create' ? 'namespace missing' : 'namespace settings differ');
        break;
      case 'dnsmasq':
        add(c.tenant, c.action === 'start' ? 'dnsmasq not running' : 'dnsmasq config differs');
        break;
      case 'address':
        add(c.tenant, `floating IP ${c.address} not on ${c.device}`);
        break;
      case 'firewall':
        // a table holds every tenant's rules: each is affected
        for (const t of tenants) add(t, 'firewall rules differ');
        break;
    }
  }
  return drift;
}

/** Why a new tenant gets a namespace of its own: the plain tenant its subnet overlaps, and where. */
function namespaceReason(tenant: string, placed: VmRecord[]): { reason?: string } {
  const mine = placed.filter((r) => r.vm.nics.some((n) => n.network.tenant === tenant));
  const net = mine[0]?.vm.nics.find((n) => n.network.tenant === tenant)?.network;
  if (!net?.namespace) return {};
  const hostOf = (r: VmRecord) => r.host ?? r.vm.host;
  const hosts = new Set(mine.map(hostOf));
  const other = placed
    .filter((r) => hosts.has(hostOf(r)))
    .flatMap((r) => r.vm.nics.map((n) => ({ n: n.network, host: hostOf(r) })))
    .find(({ n }) => n.tenant !== tenant && !n.namespace && subnetsOverlap(n, net));
  const where = other?.host ? ` on host ${other.host}` : ' on this host';
  const why = other ? `: ${net.cidr} overlaps tenant ${other.n.tenant}'s ${other.n.cidr}${where}` : '';
  return {
    reason: `gets a network namespace of its own for its gateway, DHCP/DNS and NAT (transit ${net.namespace.transit})${why}`,
  };
}

/** What the spec leaves to allocation (the IP, the segment id) stays as it was allocated. */
function keepAllocated(nic: ResolvedNic, recorded: ResolvedNic | undefined): ResolvedNic {
  if (!recorded || recorded.network.tenant !== nic.network.tenant) return nic;
  const ip = nic.ip ?? recorded.ip;
  // the same NIC keeps its device (its index and tap), even where NICs before it were detached
  const device = recorded.mac === nic.mac ? { index: recorded.index, tap: recorded.tap } : {};
  const same = JSON.stringify(nic.network.segment) === JSON.stringify(withoutSegmentId(recorded.network.segment));
  return {
    ...nic,
    ...device,
    ...(ip ? { ip } : {}),
    // a tenant keeps the namespace it was given (allocate keeps it too)
    network: {
      ...(same ? { ...nic.network, segment: recorded.network.segment } : nic.network),
      ...(recorded.network.namespace ? { namespace: recorded.network.namespace } : {}),
    },
  };
}

/**
 * A VM as a spec asks for it, with what its record allocated kept (IPs, segment ids) and its
 * host: a VM placed by free memory stays where it is unless the spec names another host.
 */
export function pinToRecord(vm: ResolvedVm, rec: VmRecord): ResolvedVm {
  const host = vm.host ?? rec.host;
  return {
    ...vm,
    ...(host ? { host } : {}),
    // a UUID or MAC the spec left to its default (derived from the VM's name) is the record's:
    // a VM renamed with `state mv` keeps its identity, as a resource moved in Terraform does
    uuid: vm.uuid === stableUuid(vm.name) ? rec.vm.uuid : vm.uuid,
    nics: vm.nics.map((n, i) => {
      const recorded = rec.vm.nics.find((r) => r.mac === n.mac) ?? rec.vm.nics[i];
      const derived = n.mac === deriveMac(`${vm.name}\0${i}`);
      const adopt = derived && recorded && recorded.network.tenant === n.network.tenant;
      return keepAllocated(adopt ? { ...n, mac: recorded.mac } : n, recorded);
    }),
  };
}

/** The attribute changes from a VM's record to what a spec asks (derived names ignored). */
function recordDiff(rec: VmRecord, pinned: ResolvedVm): AttributeChange[] {
  return diffVm(rec.host ? { ...rec.vm, host: rec.host } : rec.vm, pinned);
}

export interface PlanOptions {
  /** only these VMs or networks (tenants), and what they depend on (a VM: its networks) — Terraform's -target */
  targets?: string[];
  /** replace these VMs even where nothing changed — Terraform's -replace */
  replace?: string[];
}

export function planChanges(
  spec: SpecFile,
  records: VmRecord[],
  observed: Observed,
  options: PlanOptions = {},
  groups: ResolvedSecurityGroup[] = [],
): Plan {
  const all = planAll(spec, records, observed, options.replace ?? []);
  // groups first (a new VM may join a new group), deleted ones last (after the VMs leave them)
  const g = groupChanges(spec.securityGroups ?? [], groups);
  all.changes = [...g.filter((c) => c.action !== 'delete'), ...all.changes, ...g.filter((c) => c.action === 'delete')];
  Object.assign(all, summarise(all.changes));
  if (!options.targets?.length) return all;
  return targeted(all, options.targets);
}

/** The changes of the targets and of what they depend on: a VM's tenant networks. */
function targeted(p: Plan, targets: string[]): Plan {
  const names = new Set(targets);
  const vms = p.changes.filter((c) => c.kind === 'vm' && names.has(c.name));
  const tenants = new Set([...targets, ...vms.flatMap((c) => c.vm?.nics.map((n) => n.network.tenant) ?? [])]);
  // a targeted VM needs its networks and the groups its NICs join
  const groups = new Set([...targets, ...vms.flatMap((c) => c.vm?.nics.flatMap((n) => n.securityGroups ?? []) ?? [])]);
  const changes = p.changes.filter((c) =>
    c.kind === 'vm' ? names.has(c.name) : c.kind === 'network' ? tenants.has(c.name) : groups.has(c.name),
  );
  const warning =
    'Resource targeting is in effect: the plan may be incomplete, and what it leaves out may have changed too. ' +
    'Use -target for exceptional cases (recovering from errors, working around a limitation), not routinely.';
  return { ...summarise(changes), targets, warnings: [warning] };
}

function summarise(changes: Change[]): Plan {
  const summary: Record<ChangeAction, number> = { create: 0, update: 0, replace: 0, delete: 0, repair: 0 };
  for (const c of changes) summary[c.action]++;
  return { changes, summary };
}

export interface DesiredVm {
  /** the VM as apply leaves it: pinned to its record, or allocated against those before it */
  vm: ResolvedVm;
  /** its record, where the state has it */
  record?: VmRecord;
}

/**
 * Every VM of a spec as it will be, in the spec's order, and the records the hosts will then
 * hold for the spec's VMs (the staying ones as recorded, the new ones as allocated): what plan
 * diffs and what `graph` draws.
 */
export function desiredVms(spec: SpecFile, records: VmRecord[]): { vms: DesiredVm[]; placed: VmRecord[] } {
  const byName = new Map(records.map((r) => [r.vm.name, r]));
  const wanted = new Set(spec.vms.map((v) => v.name));
  // VMs: keep the recorded addresses of VMs whose spec does not pin them
  const placed: VmRecord[] = records.filter((r) => wanted.has(r.vm.name));
  const vms = spec.vms.map((vm): DesiredVm => {
    const record = byName.get(vm.name);
    if (record) return { vm: pinToRecord(vm, record), record };
    const allocated = allocate(vm, placed, spec.pools);
    // on its host (a forward's port is taken per host)
    placed.push({ vm: allocated, accel: 'tcg', createdAt: '', ...(allocated.host ? { host: allocated.host } : {}) });
    return { vm: allocated };
  });
  return { vms, placed };
}

function planAll(spec: SpecFile, records: VmRecord[], observed: Observed, replace: string[]): Plan {
  const changes: Change[] = [];
  const wanted = new Set(spec.vms.map((v) => v.name));
  const { vms, placed } = desiredVms(spec, records);
  for (const { vm, record: rec } of vms) {
    const state = observed.domains.get(vm.name);
    if (!rec) {
      // a domain of that name the state does not know (forgotten with `state rm`): drift, replaced
      const orphan = state !== undefined;
      changes.push({
        kind: 'vm',
        name: vm.name,
        action: orphan ? 'replace' : 'create',
        attributes: [],
        vm,
        ...(orphan
          ? { reason: 'exists in libvirt but not in the state: replaced (or `virtwire import` it first)' }
          : {}),
      });
      continue;
    }
    const attrs = recordDiff(rec, vm);
    if (replace.includes(vm.name)) {
      changes.push({
        kind: 'vm',
        name: vm.name,
        action: 'replace',
        attributes: attrs,
        vm,
        reason: 'replacement requested (-replace)',
      });
    } else if (attrs.length > 0) {
      const inPlace = attrs.every((a) => LIVE_CHANGE.test(a.name));
      changes.push({
        kind: 'vm',
        name: vm.name,
        action: inPlace ? 'update' : 'replace',
        attributes: attrs,
        vm,
        ...(inPlace ? {} : { reason: 'forces replacement' }),
      });
    } else if (state === undefined) {
      changes.push({
        kind: 'vm',
        name: vm.name,
        action: 'repair',
        repair: 'recreate',
        attributes: [],
        reason: 'domain missing in libvirt',
        vm,
      });
    } else if (state !== 'running') {
      changes.push({
        kind: 'vm',
        name: vm.name,
        action: 'repair',
        repair: 'start',
        attributes: [],
        reason: `domain is ${state}, not running`,
        vm,
      });
    }
  }
  for (const rec of records) {
    if (!wanted.has(rec.vm.name)) changes.push({ kind: 'vm', name: rec.vm.name, action: 'delete', attributes: [] });
  }

  // networks: appear with their first VM, go with their last, are repaired where the host drifted
  const tenantsBefore = new Set(records.flatMap((r) => r.vm.nics.map((n) => n.network.tenant)));
  const tenantsAfter = new Set(placed.flatMap((r) => r.vm.nics.map((n) => n.network.tenant)));
  for (const t of [...tenantsAfter].sort())
    if (!tenantsBefore.has(t))
      changes.push({ kind: 'network', name: t, action: 'create', attributes: [], ...namespaceReason(t, placed) });
  for (const t of [...tenantsBefore].sort())
    if (!tenantsAfter.has(t)) changes.push({ kind: 'network', name: t, action: 'delete', attributes: [] });
  const drift = hostDrift(tenantsBefore, observed.host);
  for (const [t, why] of [...drift].sort()) {
    if (tenantsAfter.has(t))
      changes.push({
        kind: 'network',
        name: t,
        action: 'repair',
        attributes: [],
        reason: [...new Set(why)].join(', '),
      });
  }

  return summarise(changes);
}

const SYMBOL: Record<ChangeAction, string> = { create: '+', update: '~', replace: '-/+', delete: '-', repair: '~' };

export function formatPlan(plan: Plan): string {
  if (plan.changes.length === 0) return 'No changes. The host matches the spec.';
  const lines: string[] = [];
  for (const c of plan.changes) {
    const nic = c.vm?.nics.map((n) => `${n.network.tenant} ${n.ip ?? '(dhcp)'}`).join(', ');
    const what =
      c.action === 'repair'
        ? `repair: ${c.reason}`
        : c.action === 'replace'
          ? `forces replacement${c.reason ? ` (${c.reason})` : ''}`
          : c.action === 'update'
            ? 'update in place'
            : c.action === 'create' && c.reason
              ? `create: ${c.reason}`
              : c.action;
    lines.push(
      `  ${SYMBOL[c.action].padStart(3)} ${c.kind} ${c.name}${nic && c.action === 'create' ? ` (${nic})` : ''} — ${what}`,
    );
    for (const a of c.attributes)
      lines.push(`        ~ ${a.name}: ${JSON.stringify(a.from ?? null)} -> ${JSON.stringify(a.to ?? null)}`);
  }
  const s = plan.summary;
  lines.push(
    '',
    `Plan: ${s.create} to add, ${s.update} to change, ${s.replace} to replace, ${s.delete} to destroy, ${s.repair} to repair.`,
  );
  return lines.join('\n');
}
