// Allocation against what the host already has: a VM name, MACs, IPs and tap names that no
// other VM uses, and each tenant's network defined the same way by every VM on it. Every
// conflict is reported with its path, like any other bad input.
import type { ResolvedNetwork, ResolvedVm } from '../../types/resolved.js';
import type { SegmentPools } from '../../types/spec.js';
import {
  Problems,
  at,
  parseIpv4,
  formatIpv4,
  sameNetwork,
  DEFAULT_POOLS,
  floatingClaims,
  forwardClaims,
} from '../spec/index.js';
import type { VmRecord } from './state/store.js';
import { Namespaces } from './namespace-allocation.js';

/** `host`: where the VM goes (undefined: this machine), default the VM's own `host`. */
export function allocate(
  vm: ResolvedVm,
  records: VmRecord[],
  pools: SegmentPools = {},
  host: string | undefined = vm.host,
): ResolvedVm {
  const p = new Problems();
  const segments = new SegmentIds(records, pools);
  const namespaces = new Namespaces(records, pools, host);
  if (records.some((r) => r.vm.name === vm.name)) p.add('name', `a VM named ${vm.name} already exists`);
  const nics = records.flatMap((r) => r.vm.nics.map((n) => ({ vm: r.vm.name, nic: n })));
  const taken = new Map<string, Set<string>>(); // tenant -> IPs
  for (const { nic } of nics) {
    const set = taken.get(nic.network.tenant) ?? new Set<string>();
    if (nic.ip) set.add(nic.ip);
    if (nic.ip6) set.add(nic.ip6);
    taken.set(nic.network.tenant, set);
  }
  const out = vm.nics.map((given) => {
    const path = at('nics', given.index);
    const segmented = segments.assign(p, at(at(path, 'network'), 'segment'), given.network);
    const nic = { ...given, network: namespaces.assign(p, at(path, 'network'), segmented) };
    const other = nics.find((o) => o.nic.network.tenant === nic.network.tenant);
    if (other && !sameNetwork(other.nic.network, nic.network)) {
      p.add(
        at(path, 'network'),
        `tenant ${nic.network.tenant} is already defined differently by VM ${other.vm} (${other.nic.network.cidr})`,
      );
    }
    const macOwner = nics.find((o) => o.nic.mac === nic.mac);
    if (macOwner) p.add(at(path, 'mac'), `${nic.mac} is used by VM ${macOwner.vm}`);
    const tapOwner = nics.find((o) => o.nic.tap === nic.tap);
    if (tapOwner) p.add(path, `tap ${nic.tap} is used by VM ${tapOwner.vm}`);
    const used = taken.get(nic.network.tenant) ?? new Set<string>();
    taken.set(nic.network.tenant, used);
    if (nic.ip6) {
      // a pinned address another NIC holds, or another NIC's SLAAC address (its MAC's EUI-64)
      if (used.has(nic.ip6)) p.add(at(path, 'ip6'), `${nic.ip6} is already used on tenant ${nic.network.tenant}`);
      used.add(nic.ip6);
    }
    if (nic.ip) {
      if (used.has(nic.ip)) p.add(at(path, 'ip'), `${nic.ip} is already used on tenant ${nic.network.tenant}`);
      used.add(nic.ip);
      return nic;
    }
    const ip = firstFree(nic.network.dhcpRange, used);
    if (!ip) {
      p.add(
        at(path, 'ip'),
        `no free address left in ${nic.network.dhcpRange.join('-')} on tenant ${nic.network.tenant}`,
      );
      return nic;
    }
    used.add(ip);
    return { ...nic, ip };
  });
  checkWaysIn(p, { ...vm, nics: out }, records, host);
  p.throwIfAny(`VM spec for ${vm.name}`);
  return { ...vm, nics: out };
}

/**
 * A host port (on one address, or on all) is one VM's forward, and a floating IP one NIC's: on
 * the same host for forwards, anywhere for floating IPs (hosts may share an uplink subnet).
 */
function checkWaysIn(p: Problems, vm: ResolvedVm, records: VmRecord[], host: string | undefined): void {
  const nicPath = (name: string, i: number) => `VM ${name} ${at('nics', i)}`;
  const ports = forwardClaims(' on this host');
  const floating = floatingClaims();
  for (const r of records)
    for (const n of r.vm.nics) {
      if (r.host === host)
        (n.forwards ?? []).forEach((f, k) => ports.hold(f, `${at(nicPath(r.vm.name, n.index), 'forwards')}[${k}]`));
      if (n.floatingIp) floating.hold(n.floatingIp, nicPath(r.vm.name, n.index));
    }
  for (const nic of vm.nics) {
    const path = at('nics', nic.index);
    (nic.forwards ?? []).forEach((f, k) => ports.claim(p, at(at(path, 'forwards'), k), f));
    if (nic.floatingIp) floating.claim(p, at(path, 'floatingIp'), nic.floatingIp);
  }
}

type PoolKind = 'vlan' | 'vni';
const KIND_OF = { vlan: 'vlan', vxlan: 'vni' } as const;
const LABEL = { vlan: 'VLAN', vni: 'VNI' } as const;

/**
 * VLAN ids and VNIs: a tenant keeps the one it has; a new tenant without one gets the lowest id
 * of the pool that no tenant in the state dir uses (on any host: the records of every host are
 * there), and an id that is given must not be another tenant's.
 */
class SegmentIds {
  private readonly owner = { vlan: new Map<number, string>(), vni: new Map<number, string>() };
  private readonly ofTenant = new Map<string, number>();
  private readonly pools: Required<SegmentPools>;

  constructor(records: VmRecord[], pools: SegmentPools) {
    this.pools = { ...DEFAULT_POOLS, ...pools };
    for (const n of records.flatMap((r) => r.vm.nics.map((x) => x.network))) {
      const [kind, id] = idOf(n);
      if (kind && id !== undefined) this.take(kind, id, n.tenant);
    }
  }

  private take(kind: PoolKind, id: number, tenant: string): void {
    this.owner[kind].set(id, tenant);
    this.ofTenant.set(tenant, id);
  }

  assign(p: Problems, path: string, net: ResolvedNetwork): ResolvedNetwork {
    const [kind, id] = idOf(net);
    if (!kind) return net;
    if (id !== undefined) {
      const owner = this.owner[kind].get(id);
      if (owner !== undefined && owner !== net.tenant)
        p.add(at(path, kind === 'vlan' ? 'id' : 'vni'), `${LABEL[kind]} ${id} is used by tenant ${owner}`);
      else this.take(kind, id, net.tenant);
      return net;
    }
    const chosen = this.ofTenant.get(net.tenant) ?? this.free(kind);
    if (chosen === undefined) {
      const [first, last] = this.pools[kind];
      const hint = kind === 'vlan' ? '; give this network a VXLAN segment (VNIs reach 16777215) to go beyond it' : '';
      p.add(
        at(path, kind === 'vlan' ? 'id' : 'vni'),
        `the ${LABEL[kind]} pool ${first}-${last} is exhausted: all ${last - first + 1} ids are in use${hint}`,
      );
      return net;
    }
    this.take(kind, chosen, net.tenant);
    const segment = net.segment.type === 'vlan' ? { ...net.segment, id: chosen } : { ...net.segment, vni: chosen };
    return { ...net, segment: segment as ResolvedNetwork['segment'] };
  }

  private free(kind: PoolKind): number | undefined {
    const [first, last] = this.pools[kind];
    for (let id = first; id <= last; id++) if (!this.owner[kind].has(id)) return id;
    return undefined;
  }
}

function idOf(n: ResolvedNetwork): [PoolKind | undefined, number | undefined] {
  const s = n.segment;
  if (s.type === 'vlan') return [KIND_OF.vlan, s.id];
  if (s.type === 'vxlan') return [KIND_OF.vxlan, s.vni];
  return [undefined, undefined];
}

function firstFree([start, end]: [string, string], used: Set<string>): string | undefined {
  for (let a = parseIpv4(start)!; a <= parseIpv4(end)!; a++) {
    const ip = formatIpv4(a);
    if (!used.has(ip)) return ip;
  }
  return undefined;
}
