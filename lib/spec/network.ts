import { isDeepStrictEqual } from 'node:util';
import type { HostService, NetworkSpec, SegmentPools, SegmentSpec } from '../../types/spec.js';
import type { ResolvedNetwork } from '../../types/resolved.js';
import { at, Problems } from './problems.js';
import { checkIfName, checkInt, checkKeys, checkName, isRecord } from './checks.js';
import { broadcastOf, formatIpv4, inSubnet, maskOf, parseCidr, parseIpv4 } from './ipv4.js';
import { bridgeName } from './names.js';
import { formatIpv6, inPrefix6, kindOf6, parseCidr6, parseIpv6 } from './ipv6.js';

const NETWORK_KEYS = [
  'tenant',
  'cidr',
  'gateway',
  'dhcpRange',
  'nat',
  'uplink',
  'segment',
  'hostServices',
  'dns',
  'cidr6',
  'gateway6',
  'nat6',
] as const;
const VLAN_ID_MAX = 4094;
const VNI_MAX = 16777215;
export const DEFAULT_POOLS: Required<SegmentPools> = {
  vlan: [2, VLAN_ID_MAX],
  vni: [4096, VNI_MAX],
  transit: '100.64.0.0/10',
};

/** Validates segment pools (inclusive [first, last] ranges within each id space). */
export function resolvePools(p: Problems, path: string, input: unknown): SegmentPools | undefined {
  if (input === undefined) return {};
  if (!isRecord(input)) {
    p.add(path, 'must be a map with vlan: and/or vni: ranges, and/or a transit: CIDR');
    return undefined;
  }
  const before = p.list.length;
  checkKeys(p, path, input, ['vlan', 'vni', 'transit']);
  const out: SegmentPools = {};
  if (input.transit !== undefined) {
    // each namespaced tenant takes a /30 of it: the host's end, the namespace's end
    const c = typeof input.transit === 'string' ? parseCidr(input.transit) : undefined;
    if (!c || c.address !== c.network || c.prefix > 30)
      p.add(at(path, 'transit'), `must be an IPv4 network CIDR of /30 or larger (e.g. 100.64.0.0/10)`);
    else out.transit = input.transit as string;
  }
  for (const [key, max] of [
    ['vlan', VLAN_ID_MAX],
    ['vni', VNI_MAX],
  ] as const) {
    const range = input[key];
    if (range === undefined) continue;
    if (!Array.isArray(range) || range.length !== 2) {
      p.add(at(path, key), 'must be [first, last]');
      continue;
    }
    const ok =
      checkInt(p, at(at(path, key), 0), range[0], 1, max) && checkInt(p, at(at(path, key), 1), range[1], 1, max);
    if (ok && (range[0] as number) > (range[1] as number))
      p.add(at(path, key), `first ${range[0]} is after last ${range[1]}`);
    else if (ok) out[key] = [range[0] as number, range[1] as number];
  }
  return p.list.length > before ? undefined : out;
}

/**
 * Validates one NetworkSpec at `path` and returns its resolved form, or undefined when it has
 * problems (which are all in `p`).
 */
export function resolveNetwork(p: Problems, path: string, input: unknown): ResolvedNetwork | undefined {
  if (!isRecord(input)) {
    p.add(path, 'must be an object');
    return undefined;
  }
  const before = p.list.length;
  checkKeys(p, path, input, NETWORK_KEYS);
  const spec = input as Partial<NetworkSpec>;
  checkName(p, at(path, 'tenant'), spec.tenant);

  const cidr = typeof spec.cidr === 'string' ? parseCidr(spec.cidr) : undefined;
  if (!cidr) {
    p.add(at(path, 'cidr'), `${JSON.stringify(spec.cidr ?? null)} is not an IPv4 CIDR (e.g. 10.10.0.0/24)`);
  } else if (cidr.prefix < 8 || cidr.prefix > 29) {
    p.add(
      at(path, 'cidr'),
      `prefix /${cidr.prefix} is out of range /8../29 (a tenant subnet needs a gateway and guests)`,
    );
  } else if (cidr.address !== cidr.network) {
    p.add(at(path, 'cidr'), `${spec.cidr} has host bits set; did you mean ${formatIpv4(cidr.network)}/${cidr.prefix}?`);
  }
  const usable = cidr && cidr.prefix >= 8 && cidr.prefix <= 29 && cidr.address === cidr.network ? cidr : undefined;
  const network = usable?.network ?? 0;
  const prefix = usable?.prefix ?? 32;
  const broadcast = broadcastOf(network, prefix);

  const hostIn = (field: string, text: unknown, label: string): number | undefined => {
    const ip = typeof text === 'string' ? parseIpv4(text) : undefined;
    if (ip === undefined) {
      p.add(field, `${JSON.stringify(text ?? null)} is not an IPv4 address`);
      return undefined;
    }
    if (!usable) return ip;
    if (!inSubnet(ip, network, prefix)) p.add(field, `${label} ${text} is outside ${spec.cidr}`);
    else if (ip === network || ip === broadcast) p.add(field, `${label} ${text} is the network or broadcast address`);
    return ip;
  };

  const gateway = spec.gateway === undefined ? network + 1 : hostIn(at(path, 'gateway'), spec.gateway, 'gateway');
  let range: [number, number] | undefined;
  if (spec.dhcpRange === undefined) {
    if (gateway !== undefined) range = defaultRange(network, broadcast, gateway);
  } else if (!Array.isArray(spec.dhcpRange) || spec.dhcpRange.length !== 2) {
    p.add(at(path, 'dhcpRange'), 'must be [first, last]');
  } else {
    const first = hostIn(at(at(path, 'dhcpRange'), 0), spec.dhcpRange[0], 'range start');
    const last = hostIn(at(at(path, 'dhcpRange'), 1), spec.dhcpRange[1], 'range end');
    if (first !== undefined && last !== undefined) {
      if (first > last) p.add(at(path, 'dhcpRange'), `start ${spec.dhcpRange[0]} is after end ${spec.dhcpRange[1]}`);
      else if (gateway !== undefined && gateway >= first && gateway <= last) {
        p.add(at(path, 'dhcpRange'), `range contains the gateway ${formatIpv4(gateway)}`);
      }
      range = [first, last];
    }
  }

  if (spec.nat !== undefined && typeof spec.nat !== 'boolean') p.add(at(path, 'nat'), 'must be true or false');
  if (spec.uplink !== undefined) checkIfName(p, at(path, 'uplink'), spec.uplink);
  const segment = resolveSegment(p, at(path, 'segment'), spec.segment);
  const hostServices = resolveHostServices(p, at(path, 'hostServices'), spec.hostServices);
  const dns = resolveDns(p, at(path, 'dns'), spec.dns);
  const ipv6 = resolveIpv6(p, path, spec, spec.nat ?? true);

  if (p.list.length > before || gateway === undefined || range === undefined || !segment) return undefined;
  const tenant = spec.tenant as string;
  return {
    tenant,
    network: formatIpv4(network),
    prefix,
    cidr: `${formatIpv4(network)}/${prefix}`,
    netmask: formatIpv4(maskOf(prefix)),
    broadcast: formatIpv4(broadcast),
    gateway: formatIpv4(gateway),
    dhcpRange: [formatIpv4(range[0]), formatIpv4(range[1])],
    nat: spec.nat ?? true,
    ...(spec.uplink !== undefined ? { uplink: spec.uplink } : {}),
    segment,
    ...(hostServices?.length ? { hostServices } : {}),
    ...(dns ? { dns } : {}),
    ...(ipv6 ? { ipv6 } : {}),
    bridge: bridgeName(tenant),
  };
}

/** virtwire's ULA range for namespaced tenants' IPv6 transits (fd00:7677::/32, lib/host/namespace.ts). */
const TRANSIT6 = 0xfd0076770000n << 80n;

/**
 * `cidr6` (a /64: SLAAC needs one), its `gateway6` (default ::1 of it) and `nat6` (on a NAT
 * network: default true, masquerade; false, routed as it is). A network without NAT keeps IPv6
 * inside the tenant as it keeps IPv4. ULA and global prefixes only: a link-local or multicast
 * prefix is no tenant subnet.
 */
function resolveIpv6(
  p: Problems,
  path: string,
  spec: Partial<NetworkSpec>,
  nat: boolean,
): ResolvedNetwork['ipv6'] | undefined {
  if (spec.cidr6 === undefined) {
    if (spec.gateway6 !== undefined) p.add(at(path, 'gateway6'), 'needs cidr6');
    if (spec.nat6 !== undefined) p.add(at(path, 'nat6'), 'needs cidr6');
    return undefined;
  }
  const c = typeof spec.cidr6 === 'string' ? parseCidr6(spec.cidr6) : undefined;
  const where = at(path, 'cidr6');
  if (!c) {
    p.add(where, `${JSON.stringify(spec.cidr6)} is not an IPv6 CIDR (e.g. fd10:10::/64)`);
    return undefined;
  }
  if (c.prefix !== 64) {
    p.add(where, `prefix /${c.prefix} is not /64 (SLAAC and router advertisements need a /64 per network)`);
    return undefined;
  }
  if (c.address !== c.network) {
    p.add(where, `${spec.cidr6} has host bits set; did you mean ${formatIpv6(c.network)}/64?`);
    return undefined;
  }
  const kind = kindOf6(c.network);
  if (inPrefix6(c.network, TRANSIT6, 32)) {
    p.add(where, `${spec.cidr6} is in fd00:7677::/32, which virtwire keeps for namespaced tenants' transits`);
    return undefined;
  }
  if (kind !== 'ula' && kind !== 'global') {
    p.add(where, `${spec.cidr6} is a ${kind} prefix; a tenant subnet is ULA (fc00::/7) or global unicast (2000::/3)`);
    return undefined;
  }
  let gateway = c.network | 1n;
  if (spec.gateway6 !== undefined) {
    const g = typeof spec.gateway6 === 'string' ? parseIpv6(spec.gateway6) : undefined;
    if (g === undefined) p.add(at(path, 'gateway6'), `${JSON.stringify(spec.gateway6)} is not an IPv6 address`);
    else if (!inPrefix6(g, c.network, 64))
      p.add(at(path, 'gateway6'), `gateway6 ${spec.gateway6} is outside ${spec.cidr6}`);
    else if (g === c.network) p.add(at(path, 'gateway6'), `${spec.gateway6} is the subnet-router anycast address`);
    else gateway = g;
  }
  if (spec.nat6 !== undefined && typeof spec.nat6 !== 'boolean') p.add(at(path, 'nat6'), 'must be true or false');
  else if (spec.nat6 !== undefined && !nat)
    p.add(at(path, 'nat6'), 'applies to a NAT network only (nat: false keeps IPv6 inside the tenant too)');
  return {
    cidr: `${formatIpv6(c.network)}/64`,
    network: formatIpv6(c.network),
    gateway: formatIpv6(gateway),
    outbound: !nat ? 'none' : spec.nat6 === false ? 'routed' : 'nat',
  };
}

/** `{ upstream: [ip…] }`: IPv4 or IPv6 addresses of resolvers. */
function resolveDns(p: Problems, path: string, input: unknown): { upstream?: string[] } | undefined {
  if (input === undefined) return undefined;
  if (!isRecord(input)) {
    p.add(path, 'must be { upstream: [address, …] }');
    return undefined;
  }
  checkKeys(p, path, input, ['upstream']);
  if (input.upstream === undefined) return {};
  if (!Array.isArray(input.upstream)) {
    p.add(at(path, 'upstream'), 'must be a list of resolver addresses ([] keeps the network internal)');
    return undefined;
  }
  const ok = input.upstream.every((a: unknown, i) => {
    const valid = typeof a === 'string' && (parseIpv4(a) !== undefined || /^[0-9a-f:]*:[0-9a-f:]*$/i.test(a));
    if (!valid) p.add(at(at(path, 'upstream'), i), `${JSON.stringify(a ?? null)} is not an IPv4 or IPv6 address`);
    return valid;
  });
  return ok ? { upstream: [...(input.upstream as string[])] } : undefined;
}

/** `[{ port, protocol }]`: each port 1..65535, tcp or udp, listed once. */
function resolveHostServices(p: Problems, path: string, input: unknown): HostService[] | undefined {
  if (input === undefined) return undefined;
  if (!Array.isArray(input)) {
    p.add(path, 'must be a list of { port, protocol }');
    return undefined;
  }
  const seen = new Set<string>();
  return input.flatMap((s: unknown, i) => {
    const where = at(path, i);
    if (!isRecord(s)) {
      p.add(where, 'must be { port, protocol }');
      return [];
    }
    checkKeys(p, where, s, ['port', 'protocol']);
    const portOk = checkInt(p, at(where, 'port'), s.port, 1, 65535);
    const protoOk = s.protocol === 'tcp' || s.protocol === 'udp';
    if (!protoOk) p.add(at(where, 'protocol'), `${JSON.stringify(s.protocol ?? null)} is not tcp or udp`);
    if (!portOk || !protoOk) return [];
    const key = `${String(s.protocol)}/${String(s.port)}`;
    if (seen.has(key)) p.add(where, `${key} is listed twice`);
    seen.add(key);
    return [{ port: s.port as number, protocol: s.protocol as 'tcp' | 'udp' }];
  });
}

/** "The rest of the subnet": the larger run of host addresses on either side of the gateway. */
function defaultRange(network: number, broadcast: number, gateway: number): [number, number] {
  const below: [number, number] = [network + 1, gateway - 1];
  const above: [number, number] = [gateway + 1, broadcast - 1];
  return above[1] - above[0] >= below[1] - below[0] ? above : below;
}

function resolveSegment(p: Problems, path: string, input: unknown): SegmentSpec | undefined {
  if (input === undefined) return { type: 'none' };
  if (!isRecord(input)) {
    p.add(path, 'must be an object with a type of none, vlan or vxlan');
    return undefined;
  }
  switch (input.type) {
    case 'none':
      checkKeys(p, path, input, ['type']);
      return { type: 'none' };
    case 'vlan': {
      checkKeys(p, path, input, ['type', 'id', 'uplink']);
      // both checks run: every problem is reported, not just the first
      // an omitted id is allocated from the pool (lib/engine/allocate.ts)
      const idOk = input.id === undefined || checkInt(p, at(path, 'id'), input.id, 1, VLAN_ID_MAX);
      const uplinkOk = checkIfName(p, at(path, 'uplink'), input.uplink);
      if (!idOk || !uplinkOk) return undefined;
      return {
        type: 'vlan',
        ...(input.id !== undefined ? { id: input.id as number } : {}),
        uplink: input.uplink as string,
      };
    }
    case 'vxlan': {
      checkKeys(p, path, input, ['type', 'vni', 'uplink', 'remotes', 'group', 'local']);
      let ok = input.vni === undefined || checkInt(p, at(path, 'vni'), input.vni, 1, VNI_MAX);
      ok = checkIfName(p, at(path, 'uplink'), input.uplink) && ok;
      const ipField = (key: string, value: unknown): boolean => {
        if (typeof value === 'string' && parseIpv4(value) !== undefined) return true;
        p.add(key, `${JSON.stringify(value ?? null)} is not an IPv4 address`);
        return false;
      };
      if (input.remotes !== undefined) {
        if (!Array.isArray(input.remotes)) {
          p.add(at(path, 'remotes'), 'must be a list of IPv4 addresses');
          ok = false;
        } else input.remotes.forEach((r, i) => (ok = ipField(at(at(path, 'remotes'), i), r) && ok));
      }
      if (input.group !== undefined) {
        ok = ipField(at(path, 'group'), input.group) && ok;
        const g = typeof input.group === 'string' ? parseIpv4(input.group) : undefined;
        if (g !== undefined && g >>> 28 !== 0xe) {
          p.add(at(path, 'group'), `${input.group} is not a multicast address (224.0.0.0/4)`);
          ok = false;
        }
        if (Array.isArray(input.remotes) && input.remotes.length > 0) {
          p.add(path, 'give either remotes or a multicast group, not both');
          ok = false;
        }
      }
      if (input.local !== undefined) ok = ipField(at(path, 'local'), input.local) && ok;
      if (!ok) return undefined;
      return {
        type: 'vxlan',
        ...(input.vni !== undefined ? { vni: input.vni as number } : {}),
        uplink: input.uplink as string,
        ...(input.remotes !== undefined ? { remotes: [...(input.remotes as string[])] } : {}),
        ...(input.group !== undefined ? { group: input.group as string } : {}),
        ...(input.local !== undefined ? { local: input.local as string } : {}),
      };
    }
    default:
      p.add(at(path, 'type'), `${JSON.stringify(input.type ?? null)} is not one of none, vlan, vxlan`);
      return undefined;
  }
}

/**
 * The subnet of a network input on its own (network, broadcast, gateway), when its cidr (and
 * gateway, if given) are valid — whatever is wrong elsewhere in it. Lets a NIC's address be
 * checked against it while the network's other problems are reported too.
 */
export function subnetOf(
  input: unknown,
): Pick<ResolvedNetwork, 'network' | 'prefix' | 'cidr' | 'broadcast' | 'gateway'> | undefined {
  if (!isRecord(input) || typeof input.cidr !== 'string') return undefined;
  const c = parseCidr(input.cidr);
  if (!c || c.prefix < 8 || c.prefix > 29 || c.address !== c.network) return undefined;
  const broadcast = broadcastOf(c.network, c.prefix);
  const given = typeof input.gateway === 'string' ? parseIpv4(input.gateway) : undefined;
  const gateway =
    input.gateway === undefined
      ? c.network + 1
      : given !== undefined && inSubnet(given, c.network, c.prefix)
        ? given
        : undefined;
  if (gateway === undefined) return undefined;
  return {
    network: formatIpv4(c.network),
    prefix: c.prefix,
    cidr: `${formatIpv4(c.network)}/${c.prefix}`,
    broadcast: formatIpv4(broadcast),
    gateway: formatIpv4(gateway),
  };
}

/** Validates a standalone NetworkSpec and throws a SpecError listing every problem. */
export function validateNetwork(spec: unknown, path = ''): ResolvedNetwork {
  const p = new Problems();
  const net = resolveNetwork(p, path, spec);
  p.throwIfAny('network spec');
  return net!;
}

/** Two subnets share an address. */
export function subnetsOverlap(a: ResolvedNetwork, b: ResolvedNetwork): boolean {
  const [x, y] = [a, b].map((n) => [parseIpv4(n.network)!, parseIpv4(n.broadcast)!] as const);
  return x![0] <= y![1] && y![0] <= x![1];
}

/**
 * True when two specs describe the same network (as resolved), so NICs may share it. Compared
 * as JSON values, not as text: a record read from the state (written by another version, or
 * with `namespace` added after its segment) may hold the same keys in another order.
 */
export function sameNetwork(a: ResolvedNetwork, b: ResolvedNetwork): boolean {
  const asJson = (n: ResolvedNetwork): unknown => JSON.parse(JSON.stringify(n));
  return isDeepStrictEqual(asJson(a), asJson(b));
}

/** The segment as given before allocation: an allocated id is what an omitted one became. */
export function withoutSegmentId(segment: SegmentSpec): SegmentSpec {
  if (segment.type === 'vlan') return { type: 'vlan', uplink: segment.uplink };
  if (segment.type === 'vxlan') {
    const { vni: _vni, ...rest } = segment;
    return rest;
  }
  return segment;
}
