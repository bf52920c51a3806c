// What a host plane should hold, derived from the records: the one function from records to a
// host's desired state. Only the VMs recorded on that host count (this machine: the VMs recorded
// without a host), and each tenant's segment goes out of the host's own uplink NIC where it names
// one (NIC names differ between hosts; the segment's id does not).
import type { HostNetwork, HostSecurityGroup, HostState } from '../../types/host.js';
import type { ResolvedNetwork, ResolvedSecurityGroup } from '../../types/resolved.js';
import type { HostContext } from './hosts.js';
import type { VmRecord } from './state/store.js';
import { ipv6Sources } from '../spec/index.js';

/**
 * `groups`: the state's security groups. A tenant's network carries the groups its ports here
 * name and the groups those name as peers; a peer group's members are every NIC in it, on every
 * host (a VXLAN or VLAN segment joins them), by address.
 */
export function hostStateFor(
  records: VmRecord[],
  host: Pick<HostContext, 'name' | 'uplink' | 'address'>,
  groups: ResolvedSecurityGroup[],
): HostState {
  const byTenant = new Map<string, HostNetwork>();
  for (const { vm } of records.filter((r) => r.host === host.name)) {
    for (const nic of vm.nics) {
      const tenant = nic.network.tenant;
      let net = byTenant.get(tenant);
      if (!net) {
        let segment = nic.network.segment;
        if (host.uplink && segment.type !== 'none') segment = { ...segment, uplink: host.uplink };
        if (host.address && segment.type === 'vxlan' && peersFromHosts(segment))
          segment = { ...segment, local: host.address, remotes: peerAddresses(records, tenant, host.name) };
        byTenant.set(tenant, (net = { network: { ...nic.network, segment }, ports: [] }));
      }
      net.ports.push({
        name: nic.tap,
        kind: 'tap',
        mac: nic.mac,
        ...(nic.ip ? { ip: nic.ip } : {}),
        ...(nic.ip6 ? { ip6: nic.ip6, ...(nic.ip6Pinned ? { ip6Pinned: true as const } : {}) } : {}),
        hostname: nic.index === 0 ? vm.name : `${vm.name}-nic${nic.index}`.slice(0, 31),
        ...(nic.qos ? { qos: nic.qos } : {}),
        ...(nic.securityGroups?.length ? { securityGroups: nic.securityGroups } : {}),
        ...(nic.forwards?.length ? { forwards: nic.forwards } : {}),
        ...(nic.floatingIp ? { floatingIp: nic.floatingIp } : {}),
      });
    }
  }
  for (const net of byTenant.values()) {
    const used = hostGroups(net, records, groups);
    if (used.length) net.securityGroups = used;
  }
  return { networks: [...byTenant.values()].sort((a, b) => a.network.tenant.localeCompare(b.network.tenant)) };
}

/** A VXLAN segment that names neither remotes nor a multicast group: its peers are the hosts'. */
export function peersFromHosts(segment: ResolvedNetwork['segment']): boolean {
  return segment.type === 'vxlan' && !segment.group && !segment.remotes?.length;
}

/** The underlay addresses of the other hosts where `tenant` has VMs (as their records keep them). */
function peerAddresses(records: VmRecord[], tenant: string, here: string | undefined): string[] {
  const addresses = records
    .filter((r) => r.host !== here && r.hostTarget?.address && r.vm.nics.some((n) => n.network.tenant === tenant))
    .map((r) => r.hostTarget!.address!);
  return [...new Set(addresses)].sort();
}

/** The groups a network's ports name, with their group peers' member addresses. */
function hostGroups(net: HostNetwork, records: VmRecord[], groups: ResolvedSecurityGroup[]): HostSecurityGroup[] {
  const tenant = net.network.tenant;
  const named = new Set(net.ports.flatMap((p) => p.securityGroups ?? []));
  // a member is every address it may send from: its IPv4 one, and on a network with IPv6 its own (ipv6Sources)
  const members = (group: string) =>
    records
      .flatMap((r) => r.vm.nics)
      .filter((n) => n.network.tenant === tenant && n.ip && n.securityGroups?.includes(group))
      .flatMap((n) => [n.ip!, ...ipv6Sources(n.mac, n.network.ipv6, n.ip6)])
      .sort();
  return groups
    .filter((g) => g.tenant === tenant && named.has(g.name))
    .map((g) => ({
      name: g.name,
      rules: g.rules.map(({ direction, protocol, ports, peer, ethertype }) => ({
        direction,
        protocol,
        ...(ports ? { ports } : {}),
        peer: 'group' in peer ? { group: peer.group, addresses: members(peer.group) } : peer,
        ...(ethertype ? { ethertype } : {}),
      })),
    }));
}
