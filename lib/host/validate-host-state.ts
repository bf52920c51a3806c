// Validation of a HostState before anything on the host changes: every problem, with its path.
import type { HostNetwork, HostPort, HostState } from '../../types/host.js';
import {
  at,
  checkIfName,
  checkInt,
  checkName,
  checkPositive,
  Problems,
  parseMac,
  parseIpv4,
  parseIpv6,
  formatIpv6,
  inSubnet,
  isRecord,
  parseCidr,
  PACKET_RATE,
  checkFloatingIp,
  floatingClaims,
  forwardClaims,
  resolveForwards,
} from '../spec/index.js';
import { namespacesOf } from './namespace.js';
import { SpecError } from '../errors/index.js';

export function validateHostState(state: HostState): void {
  const p = new Problems();
  if (!isRecord(state) || !Array.isArray(state.networks))
    throw new SpecError([{ path: 'networks', message: 'must be an array' }], 'host state');
  const names = new Map<string, string>();
  const tenants = new Set<string>();
  const served = new Map<string, string>(); // gateway address -> tenant whose dnsmasq serves it
  const transits = new Map<string, string>(); // a namespaced tenant's transit /30 and zone -> tenant
  const claim = (path: string, name: string) => {
    const other = names.get(name);
    if (other) p.add(path, `device name ${name} is also used at ${other}`);
    else names.set(name, path);
  };
  const ways: WaysIn = { forwards: forwardClaims(), floating: floatingClaims() };
  state.networks.forEach((net, i) => {
    const path = at('networks', i);
    const n = net.network;
    const twice = tenants.has(n.tenant);
    if (twice) p.add(at(at(path, 'network'), 'tenant'), `tenant ${n.tenant} appears twice`);
    tenants.add(n.tenant);
    if (n.namespace) checkNamespace(p, at(path, 'network'), net, transits);
    else if (net.dhcp !== false && !twice) {
      // dnsmasq answers DNS on the gateway address: two instances cannot bind the same one
      const other = served.get(n.gateway);
      if (other)
        p.add(
          at(path, 'dhcp'),
          `gateway ${n.gateway} is also tenant ${other}'s: one host cannot run DHCP/DNS for both in its own namespace (give one a namespace of its own, turn DHCP off for one, or give it another subnet)`,
        );
      else served.set(n.gateway, n.tenant);
    }
    if (checkIfName(p, at(at(path, 'network'), 'bridge'), n.bridge)) claim(at(at(path, 'network'), 'bridge'), n.bridge);
    const seg = n.segment;
    if ((seg.type === 'vlan' && seg.id === undefined) || (seg.type === 'vxlan' && seg.vni === undefined)) {
      p.add(
        at(at(path, 'network'), 'segment'),
        `tenant ${n.tenant}'s ${seg.type} segment has no id: createVm allocates one from the pool`,
      );
    }
    const macs = new Set<string>();
    const ips = new Set<string>();
    net.ports.forEach((port, j) => {
      const pp = at(at(path, 'ports'), j);
      if (checkIfName(p, at(pp, 'name'), port.name)) claim(at(pp, 'name'), port.name);
      if (port.kind !== 'tap' && port.kind !== 'veth') p.add(at(pp, 'kind'), `must be "tap" or "veth"`);
      if (port.kind === 'veth') {
        if (!port.peer) p.add(at(pp, 'peer'), 'a veth port needs its peer { name, netns }');
        else {
          checkIfName(p, at(at(pp, 'peer'), 'name'), port.peer.name);
          checkName(p, at(at(pp, 'peer'), 'netns'), port.peer.netns);
        }
      }
      const mac = parseMac(String(port.mac));
      if ('error' in mac) p.add(at(pp, 'mac'), mac.error);
      else if (macs.has(mac.mac)) p.add(at(pp, 'mac'), `${mac.mac} is used by another port of this network`);
      else macs.add(mac.mac);
      if (port.ip !== undefined) {
        const ip = parseIpv4(port.ip);
        if (ip === undefined) p.add(at(pp, 'ip'), `"${port.ip}" is not an IPv4 address`);
        else if (
          !inSubnet(ip, parseIpv4(n.network)!, n.prefix) ||
          port.ip === n.gateway ||
          port.ip === n.network ||
          port.ip === n.broadcast
        ) {
          p.add(at(pp, 'ip'), `${port.ip} is not a guest address of ${n.cidr}`);
        } else if (ips.has(port.ip)) p.add(at(pp, 'ip'), `${port.ip} is used by another port of this network`);
        else ips.add(port.ip);
      }
      if (port.ip6 !== undefined) checkPortIp6(p, at(pp, 'ip6'), port.ip6, n, ips);
      else if (port.ip6Pinned) p.add(at(pp, 'ip6Pinned'), 'needs ip6');
      if (port.hostname !== undefined) checkName(p, at(pp, 'hostname'), port.hostname);
      for (const key of ['egressKbps', 'ingressKbps', 'burstKiB'] as const) {
        if (port.qos?.[key] !== undefined) checkPositive(p, at(at(pp, 'qos'), key), port.qos[key]);
      }
      const pps = port.qos?.packetsPerSecond;
      if (pps !== undefined) checkInt(p, at(at(pp, 'qos'), 'packetsPerSecond'), pps, PACKET_RATE.min, PACKET_RATE.max);
      checkWaysIn(p, pp, port, net, ways);
      if (port.securityGroups?.length) {
        // a member port is known to the rules by its address
        if (port.ip === undefined) p.add(at(pp, 'securityGroups'), 'a port in security groups needs its ip');
        const known = new Set((net.securityGroups ?? []).map((g) => g.name));
        port.securityGroups.forEach((g, k) => {
          if (!known.has(g)) p.add(at(at(pp, 'securityGroups'), k), `no security group ${g} in this network`);
        });
      }
    });
    checkHostGroups(p, at(path, 'securityGroups'), net);
  });
  p.throwIfAny('host state');
}

/** The host's ports and floating IPs claimed so far, by what claimed them. */
interface WaysIn {
  forwards: ReturnType<typeof forwardClaims>;
  floating: ReturnType<typeof floatingClaims>;
}

/** A port's forwards and floating IP: valid (as a spec's), with its address, and no other port's. */
function checkWaysIn(p: Problems, pp: string, port: HostPort, net: HostNetwork, ways: WaysIn): void {
  const forwards = resolveForwards(p, at(pp, 'forwards'), port.forwards, net.network, ways.forwards) ?? [];
  const floating = checkFloatingIp(p, at(pp, 'floatingIp'), port.floatingIp, net.network);
  if ((forwards.length || floating) && port.ip === undefined)
    p.add(pp, 'a port with forwards or a floating IP needs its ip');
  if (floating) ways.floating.claim(p, at(pp, 'floatingIp'), floating);
}

/** A namespaced tenant's transit /30: one of its own on this host, and a conntrack zone of its own. */
function checkNamespace(p: Problems, path: string, net: HostNetwork, taken: Map<string, string>): void {
  const n = net.network;
  const transit = at(at(path, 'namespace'), 'transit');
  const c = parseCidr(n.namespace!.transit);
  if (!c || c.prefix !== 30 || c.address !== c.network) {
    p.add(transit, `"${n.namespace!.transit}" is not an IPv4 /30 network`);
    return;
  }
  const zone = namespacesOf({ networks: [net] })[0]!.zone;
  for (const key of [`transit ${n.namespace!.transit}`, `conntrack zone ${zone}`]) {
    const other = taken.get(key);
    if (other) p.add(transit, `${key} is also tenant ${other}'s`);
    else taken.set(key, n.tenant);
  }
  if (n.hostServices?.length)
    p.add(at(path, 'hostServices'), `host services are not supported for a tenant in a namespace of its own`);
}

/** The values of a network's security groups that reach firewall rules. */
function checkHostGroups(p: Problems, path: string, net: HostNetwork): void {
  (net.securityGroups ?? []).forEach((g, i) => {
    const gp = at(path, i);
    checkName(p, at(gp, 'name'), g.name);
    g.rules.forEach((r, j) => {
      const rp = at(at(gp, 'rules'), j);
      for (const [lo, hi] of r.ports ?? [])
        if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 1 && lo <= hi && hi <= 65535))
          p.add(at(rp, 'ports'), `${lo}-${hi} is not a port range within 1..65535`);
      const addresses = 'cidr' in r.peer ? [r.peer.cidr.split('/')[0]!] : 'group' in r.peer ? r.peer.addresses : [];
      for (const a of addresses) if (parseIpv4(a) === undefined) p.add(at(rp, 'peer'), `"${a}" is not an IPv4 address`);
      if ('cidr' in r.peer && !/^[^/]+\/(\d|[12]\d|3[0-2])$/.test(r.peer.cidr))
        p.add(at(rp, 'peer'), `"${r.peer.cidr}" is not an IPv4 CIDR`);
    });
  });
}

/** A port's IPv6 address: canonical, a guest address of its network's cidr6, its own. */
function checkPortIp6(p: Problems, path: string, ip6: string, n: HostNetwork['network'], seen: Set<string>): void {
  const v6 = n.ipv6;
  const value = parseIpv6(ip6);
  if (!v6) p.add(path, `the network of tenant ${n.tenant} has no IPv6`);
  else if (value === undefined || formatIpv6(value) !== ip6)
    p.add(path, `"${ip6}" is not an IPv6 address in canonical form (RFC 5952)`);
  else if (value >> 64n !== parseIpv6(v6.network)! >> 64n || ip6 === v6.gateway || ip6 === v6.network)
    p.add(path, `${ip6} is not a guest address of ${v6.cidr}`);
  else if (seen.has(ip6)) p.add(path, `${ip6} is used by another port of this network`);
  else seen.add(ip6);
}
