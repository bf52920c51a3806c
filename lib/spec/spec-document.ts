// A spec document (the CLI's spec file once parsed: networks, VMs, security groups, pools,
// hosts) checked as a whole: every problem with its path — unknown keys, types, validation,
// duplicates, references to tenants, groups and hosts — and the overlaps between tenants.
import type { NetworkSpec, SegmentPools } from '../../types/spec.js';
import type { HostTarget, PathPolicy } from '../../types/vm.js';
import type { ResolvedNetwork, ResolvedSecurityGroup, ResolvedVm } from '../../types/resolved.js';
import { Problems, at } from './problems.js';
import { isRecord } from './checks.js';
import { resolveNetwork, resolvePools, subnetsOverlap } from './network.js';
import { resolveVm } from './vm.js';
import { resolveSecurityGroup, checkSecurityReferences } from './security-group.js';
import { checkHosts } from './hosts.js';
import { checkPathPolicy } from './path-policy.js';
import { checkStateUrl } from './state-url.js';

export interface SpecFile {
  networks: ResolvedNetwork[];
  vms: ResolvedVm[];
  /** the security groups the NICs name (absent: none) */
  securityGroups?: ResolvedSecurityGroup[];
  /** where omitted VLAN ids and VNIs come from */
  pools?: SegmentPools;
  /** the hosts VMs may be placed on (default: this machine) */
  hosts?: HostTarget[];
  /** directories VMs' files may come from or go to beyond the defaults (the operator's file) */
  paths?: PathPolicy;
  /** where the state is kept: a PostgreSQL URL (the CLI's --state and VIRTWIRE_STATE win over it) */
  state?: string;
  /** what virtwire does about tenants whose subnets overlap, one sentence per pair (absent: none overlap) */
  overlaps?: string[];
}

const TOP_KEYS = ['networks', 'vms', 'securityGroups', 'pools', 'hosts', 'paths', 'state'];

/** The document `input` resolved, its problems collected into `p` (undefined: not a map at all). */
export function resolveSpecDocument(p: Problems, input: unknown): SpecFile | undefined {
  if (!isRecord(input)) {
    p.add('(root)', 'must be a map with networks: and vms:');
    return undefined;
  }
  for (const key of Object.keys(input))
    if (!TOP_KEYS.includes(key)) p.add(key, `unknown field (allowed: ${TOP_KEYS.join(', ')})`);
  const netInputs = input.networks ?? [];
  const vmInputs = input.vms ?? [];
  if (!Array.isArray(netInputs)) p.add('networks', 'must be a list of networks');
  if (!Array.isArray(vmInputs)) p.add('vms', 'must be a list of VMs');
  const networks: ResolvedNetwork[] = [];
  const overlaps: string[] = [];
  const byTenant = new Map<string, NetworkSpec>();
  (Array.isArray(netInputs) ? netInputs : []).forEach((n: unknown, i: number) => {
    const resolved = resolveNetwork(p, at('networks', i), n);
    if (!resolved) return;
    if (byTenant.has(resolved.tenant))
      p.add(at(at('networks', i), 'tenant'), `tenant ${resolved.tenant} is defined twice`);
    for (const o of networks.filter((o) => subnetsOverlap(o, resolved))) overlaps.push(overlapNote(o, resolved));
    for (const o of networks.filter((o) => o.ipv6 && o.ipv6.cidr === resolved.ipv6?.cidr))
      p.add(
        at(at('networks', i), 'cidr6'),
        `${resolved.ipv6!.cidr} is also tenant ${o.tenant}'s: one /64 is one link (its router advertisements, its ` +
          `neighbours), so two tenants cannot share it; IPv6 is plentiful, give each tenant a /64 of its own`,
      );
    byTenant.set(resolved.tenant, n as NetworkSpec);
    networks.push(resolved);
  });
  const vms: ResolvedVm[] = [];
  const names = new Set<string>();
  (Array.isArray(vmInputs) ? vmInputs : []).forEach((v: unknown, i: number) => {
    const path = at('vms', i);
    if (isRecord(v) && typeof v.name === 'string') {
      if (names.has(v.name)) p.add(at(path, 'name'), `VM ${v.name} is defined twice`);
      names.add(v.name);
    }
    const unknownNetworks: string[] = [];
    if (isRecord(v) && Array.isArray(v.nics)) {
      // a NIC may name its network by tenant
      v = {
        ...v,
        nics: v.nics.map((nic: unknown, j: number) => {
          if (!isRecord(nic) || typeof nic.network !== 'string') return nic;
          const net = byTenant.get(nic.network);
          if (net) return { ...nic, network: net };
          const where = at(at(at(path, 'nics'), j), 'network');
          p.add(where, `no network with tenant "${nic.network}" in networks:`);
          unknownNetworks.push(where);
          return { ...nic, network: { tenant: nic.network, cidr: '0.0.0.0/0' } };
        }),
      };
    }
    if (unknownNetworks.length === 0) {
      const vm = resolveVm(p, path, v);
      if (vm) vms.push(vm);
      return;
    }
    // the VM's other problems still count; only its stand-in networks' own are not news
    const scratch = new Problems();
    resolveVm(scratch, path, v);
    for (const x of scratch.list)
      if (!unknownNetworks.some((w) => x.path === w || x.path.startsWith(`${w}.`))) p.add(x.path, x.message);
  });
  const vmIndex = (name: string) => (vmInputs as { name?: unknown }[]).findIndex((v) => v?.name === name);
  const securityGroups = resolveGroups(p, input.securityGroups, byTenant, vms, vmIndex);
  const pools = resolvePools(p, 'pools', input.pools);
  const hosts = checkHosts(p, input.hosts);
  const paths = checkPathPolicy(p, 'paths', input.paths);
  const state = input.state !== undefined && checkStateUrl(p, 'state', input.state) ? input.state : undefined;
  vms.forEach((vm) => {
    if (vm.host !== undefined && !hosts.some((h) => h.name === vm.host)) {
      p.add(
        at(at('vms', vmIndex(vm.name)), 'host'),
        hosts.length
          ? `host ${vm.host} is not one of hosts: (${hosts.map((h) => h.name).join(', ')})`
          : `host ${vm.host} is not known: the file has no hosts:`,
      );
    }
  });
  return {
    networks,
    vms,
    ...(securityGroups.length ? { securityGroups } : {}),
    ...(pools && Object.keys(pools).length ? { pools } : {}),
    ...(hosts.length ? { hosts } : {}),
    ...(paths ? { paths } : {}),
    ...(state ? { state } : {}),
    ...(overlaps.length ? { overlaps } : {}),
  };
}

/** Why two tenants overlap, and what virtwire does about it. */
function overlapNote(first: ResolvedNetwork, second: ResolvedNetwork): string {
  return (
    `tenants ${first.tenant} (${first.cidr}) and ${second.tenant} (${second.cidr}) overlap: on a host where both ` +
    `have VMs, the one that arrives second gets a network namespace of its own for its gateway, DHCP/DNS and NAT ` +
    `(joined to the host by a transit /30 from pools.transit, NAT'd twice), and keeps it; neither sees the other's frames` +
    (first.ipv6 || second.ipv6
      ? `; a tenant in a namespace of its own cannot have IPv6 yet (cidr6): on a host where both have VMs, the second to arrive is refused if it has cidr6`
      : '')
  );
}

/** The file's groups: each valid, names unique, tenants of the file, and every reference resolved. */
function resolveGroups(
  p: Problems,
  input: unknown,
  tenants: Map<string, NetworkSpec>,
  vms: ResolvedVm[],
  vmIndex: (name: string) => number,
): ResolvedSecurityGroup[] {
  if (input === undefined) input = [];
  if (!Array.isArray(input)) {
    p.add('securityGroups', 'must be a list of security groups');
    return [];
  }
  const groups: { group: ResolvedSecurityGroup; path: string }[] = [];
  const invalid = new Set<string>();
  input.forEach((g: unknown, i: number) => {
    const path = at('securityGroups', i);
    const group = resolveSecurityGroup(p, path, g);
    if (!group) {
      if (isRecord(g) && typeof g.name === 'string') invalid.add(g.name);
      return;
    }
    if (groups.some((o) => o.group.name === group.name))
      p.add(at(path, 'name'), `security group ${group.name} is defined twice`);
    else if (!tenants.has(group.tenant))
      p.add(at(path, 'tenant'), `no network with tenant "${group.tenant}" in networks:`);
    else groups.push({ group, path });
  });
  const nics = vms.flatMap((vm) =>
    vm.nics.map((n) => ({
      tenant: n.network.tenant,
      groups: n.securityGroups ?? [],
      path: at(at(at(at('vms', vmIndex(vm.name)), 'nics'), n.index), 'securityGroups'),
    })),
  );
  checkSecurityReferences(p, groups, nics, invalid);
  return groups.map((g) => g.group);
}
