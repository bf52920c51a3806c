// The nftables rendering: the tenant policy (policy.ts) and the security groups (sg.ts) as the
// bodies of two tables of virtwire's own, `inet virtwire` (NAT, forwarding policy, isolation,
// host access) and `bridge virtwire` (per-port anti-spoofing, uplink guards). A keyed rule is one
// rule over a set, so the rule count does not grow with the ports. nft-table.ts swaps the tables
// in and compares them with the live ones.
import type { HostState, HostSecurityRule } from '../../../types/host.js';
import { cidr, cidr6, ifname, ipv4, ipv6, ipv6Hex, mac, port } from './values.js';
import { TENANT_DEVICES, tenantPolicy, type FlowLimits, type PacketRate } from './policy.js';
import {
  ICMP6_TYPES,
  isInSet,
  type Cond,
  type Field,
  type InSet,
  type KeyedRule,
  type Rule,
  type RowSet,
  type Value,
  type Verdict,
} from './rules.js';
import { groupId, peerGroups, policyId, ruleFamily, sgPorts, type SgPolicy } from './sg.js';

/** A set's elements as nft prints them in JSON: names, or concatenations joined by " . ". */
export type Sets = Record<string, string[]>;

/** Each field as nft names it in a match, and the type of its set elements. */
const FIELDS: Record<Field, { expr: string; type: string }> = {
  iif: { expr: 'iifname', type: 'ifname' },
  oif: { expr: 'oifname', type: 'ifname' },
  saddr: { expr: 'ip saddr', type: 'ipv4_addr' },
  daddr: { expr: 'ip daddr', type: 'ipv4_addr' },
  ct: { expr: 'ct state', type: '' },
  ctStatus: { expr: 'ct status', type: '' },
  daddrType: { expr: 'fib daddr type', type: '' },
  l4proto: { expr: 'meta l4proto', type: 'inet_proto' },
  dport: { expr: 'th dport', type: 'inet_service' },
  udpSport: { expr: 'udp sport', type: 'inet_service' },
  udpDport: { expr: 'udp dport', type: 'inet_service' },
  icmpType: { expr: 'icmp type', type: '' },
  etherSrc: { expr: 'ether saddr', type: 'ether_addr' },
  etherType: { expr: 'ether type', type: '' },
  arpSpa: { expr: 'arp saddr ip', type: 'ipv4_addr' },
  arpTpa: { expr: 'arp daddr ip', type: 'ipv4_addr' },
  arpSha: { expr: 'arp saddr ether', type: 'ether_addr' },
  // raw bytes of the transport payload: no named type (a set of them is declared by `typeof`)
  dhcpChaddr: { expr: '@th,288,48', type: '' },
  saddr6: { expr: 'ip6 saddr', type: 'ipv6_addr' },
  daddr6: { expr: 'ip6 daddr', type: 'ipv6_addr' },
  icmp6Type: { expr: 'icmpv6 type', type: '' },
  // nft 1.0.6 (Debian 12) has no `icmpv6 taddr`: the target's raw bytes (after type, code,
  // checksum and 4 bytes of flags), as for dhcpChaddr
  ndTarget: { expr: '@th,64,128', type: '' },
  fragment: { expr: 'exthdr frag', type: '' },
};

const PROTOCOLS = new Set(['tcp', 'udp', 'icmp']);
const NAMED: Record<string, string> = {
  established: 'established,related',
  'echo-request': 'echo-request',
  dnat: 'dnat',
  local: 'local',
  ip: 'ip',
  arp: 'arp',
  ip6: 'ip6',
};

/** A value checked for its field, as it goes into a set element or a match (unquoted). */
function value(field: Field, v: Value): string {
  switch (field) {
    case 'iif':
    case 'oif':
      return ifname(String(v));
    case 'saddr':
    case 'daddr':
      return String(v).includes('/') ? cidr(String(v)) : ipv4(String(v));
    case 'arpSpa':
    case 'arpTpa':
      return ipv4(String(v));
    case 'saddr6':
    case 'daddr6':
      return String(v).includes('/') ? cidr6(String(v)) : ipv6(String(v));
    case 'ndTarget':
      // a raw payload field is an integer to nft: the address's 128 bits, in hex as nft -j prints them
      return `0x${ipv6Hex(String(v))}`;
    case 'icmp6Type': {
      const types = Array.isArray(v) ? v.map(String) : [String(v)];
      for (const t of types) if (!(t in ICMP6_TYPES)) throw new Error(`unknown ICMPv6 type ${t}`);
      return types.length > 1 ? `{ ${types.join(', ')} }` : types[0]!;
    }
    case 'fragment':
      if (v !== 'yes') throw new Error(`unknown fragment ${String(v)}`);
      return 'exists';
    case 'etherSrc':
    case 'arpSha':
      return mac(String(v));
    case 'dhcpChaddr':
      // a raw payload field is an integer to nft: the MAC's 48 bits, as nft -j prints it
      return BigInt(`0x${mac(String(v)).replaceAll(':', '')}`).toString();
    case 'dport':
    case 'udpSport':
    case 'udpDport':
      return Array.isArray(v) ? `{ ${v.map((x) => port(Number(x))).join(', ')} }` : `${port(Number(v))}`;
    case 'l4proto':
      if (!PROTOCOLS.has(String(v))) throw new Error(`unknown protocol ${String(v)}`);
      return String(v);
    default:
      if (!(String(v) in NAMED)) throw new Error(`unknown ${field} ${String(v)}`);
      return NAMED[String(v)]!;
  }
}

const quoted = (field: Field, v: Value) =>
  field === 'iif' || field === 'oif' ? `"${value(field, v)}"` : value(field, v);

function match(c: Cond | InSet): string {
  if (isInSet(c)) return `${FIELDS[c.field].expr} @${c.set}`;
  return `${FIELDS[c.field].expr} ${c.not ? '!= ' : ''}${quoted(c.field, c.value)}`;
}

function verdict(v: Verdict): string {
  if (typeof v !== 'object') return v === 'pass' ? 'accept' : v;
  if ('zone' in v) return `ct zone set ${v.zone}`;
  if ('snat' in v) return `snat ip to ${ipv4(v.snat)}`;
  return `dnat ip to ${ipv4(v.dnat)}${v.port ? `:${port(v.port)}` : ''}`;
}

const line = (r: Rule) => [...r.conds.map(match), verdict(r.verdict)].join(' ');

function keyedLine(r: KeyedRule): string {
  const key = r.key.map((f) => FIELDS[f].expr).join(' . ');
  if (r.not)
    // a device outside `members` has no row: without the guard every such frame would differ;
    // the conditions before the lookup, so only the packets they name are looked up
    return [
      `${FIELDS[r.key[0]!].expr} @${r.members}`,
      ...r.conds.map(match),
      `${key} != @${r.set}`,
      verdict(r.verdict),
    ].join(' ');
  return [`${key} @${r.set}`, ...r.conds.map(match), verdict(r.verdict)].join(' ');
}

// The two families' words in nft, and the suffix of the names of a family's own sets, maps and chains.
type Family4or6 = 'ipv4' | 'ipv6';
const FAMILY = {
  ipv4: { ip: 'ip', icmp: 'icmp', set: 'sgm_', chain: 'sgc_', suffix: '', addr: ipv4, cidr, type: 'ipv4_addr' },
  ipv6: {
    ip: 'ip6',
    icmp: 'ipv6-icmp',
    set: 'sgm6_',
    chain: 'sgc6_',
    suffix: '6',
    addr: ipv6,
    cidr: cidr6,
    type: 'ipv6_addr',
  },
} as const;

// Flow limits (policy.ts): per source address of each family, in sets the kernel fills (dyn_:
// never compared with the wanted elements, see nft-table.ts). A guest sends from its own addresses
// only: per address is per guest.
const flowSets = (f: Family4or6) => {
  const name = `dyn_flow${FAMILY[f].suffix}`;
  const type = `    type ${FAMILY[f].type}`;
  return [
    `  set ${name}_rate {`,
    type,
    '    size 65535',
    '    flags dynamic,timeout',
    '    timeout 1m',
    '  }',
    `  set ${name}_count {`,
    type,
    '    size 65535',
    '    flags dynamic',
    '  }',
  ];
};
const flowLimitRules = (l: FlowLimits, f: Family4or6) => {
  const [name, ip] = [`dyn_flow${FAMILY[f].suffix}`, FAMILY[f].ip];
  return [
    `iifname @${TENANT_DEVICES} ct state new add @${name}_rate { ${ip} saddr limit rate over ${l.newPerSecond}/second burst ${l.burst} packets } drop`,
    `iifname @${TENANT_DEVICES} ct state new add @${name}_count { ${ip} saddr ct count over ${l.flows} } drop`,
  ];
};

// Packet-rate caps (policy.ts): per port (the rate's bridge set), in a set the kernel fills, one
// rule per distinct rate.
const rateSets = (r: PacketRate) => [
  `  set dyn_${r.set} {`,
  '    type ifname',
  '    size 65535',
  '    flags dynamic,timeout',
  '    timeout 1m',
  '  }',
];
const rateRule = (r: PacketRate) =>
  `iifname @${r.set} add @dyn_${r.set} { iifname limit rate over ${r.rate}/second burst ${r.burst} packets } drop`;

/** A policy's sets as nft elements, with their types. */
function elements(sets: Record<string, RowSet>): { sets: Sets; types: Record<string, string> } {
  const out: Sets = {};
  const types: Record<string, string> = {};
  for (const [name, s] of Object.entries(sets)) {
    out[name] = s.rows.map((row) => row.map((v, i) => value(s.fields[i]!, v)).join(' . '));
    // a field without a named type: the set is declared by the expressions it holds
    types[name] = s.fields.every((f) => FIELDS[f].type)
      ? s.fields.map((f) => FIELDS[f].type).join(' . ')
      : `typeof ${s.fields.map((f) => FIELDS[f].expr).join(' . ')}`;
  }
  return { sets: out, types };
}

// Security groups (sg.ts): the two lookups every forwarded packet of a member port
// meets, before the tenant's own rules — the receiver's ingress policy, then the sender's egress —
// per family: IPv4 by its address, IPv6 by every address it may send from (its link-local one too).
const sgForward = (f: Family4or6) => [
  `oifname . ${FAMILY[f].ip} daddr vmap @sg_in${FAMILY[f].suffix}`,
  `iifname . ${FAMILY[f].ip} saddr vmap @sg_out${FAMILY[f].suffix}`,
];
// a member's neighbour discovery is never a policy's to drop (Neutron allows it too): without it
// no address of the link resolves
const ND = 'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } return';

const range = ([lo, hi]: [number, number]) => (lo === hi ? `${port(lo)}` : `${port(lo)}-${port(hi)}`);

/** One rule of a policy, in one family: what it matches, then `return` (allowed: on to the next check). */
function sgRule(rule: HostSecurityRule, tenant: string, f: Family4or6): string {
  const F = FAMILY[f];
  const side = rule.direction === 'ingress' ? 'saddr' : 'daddr';
  const parts: string[] = [];
  if ('cidr' in rule.peer) parts.push(`${F.ip} ${side} ${F.cidr(rule.peer.cidr)}`);
  else if ('group' in rule.peer) parts.push(`${F.ip} ${side} @${F.set}${groupId(tenant, rule.peer.group)}`);
  if (rule.protocol === 'tcp' || rule.protocol === 'udp')
    parts.push(
      rule.ports ? `${rule.protocol} dport { ${rule.ports.map(range).join(', ')} }` : `meta l4proto ${rule.protocol}`,
    );
  else if (rule.protocol === 'icmp') parts.push(`meta l4proto ${F.icmp}`);
  return [...parts, 'return'].join(' ');
}

/** A policy's rules of one family. */
const inFamily = (policy: SgPolicy, f: Family4or6): SgPolicy => ({
  ...policy,
  rules: policy.rules.filter((r) => ruleFamily(r.rule, f)),
});

const policyChain = (policy: SgPolicy, f: Family4or6) =>
  `${FAMILY[f].chain}${policyId(policy, (r) => sgRule(r, policy.tenant, f))}_${policy.direction === 'ingress' ? 'i' : 'o'}`;

/**
 * The security groups' part of `inet virtwire`: member sets, one chain per policy and family,
 * the maps (IPv6's only where a member port has IPv6).
 */
function sgRuleset(state: HostState): {
  sets: Sets;
  maps: Sets;
  chains: string[];
  rules: number;
  families: Family4or6[];
} {
  const ports = sgPorts(state);
  if (ports.length === 0) return { sets: {}, maps: {}, chains: [], rules: 0, families: [] };
  const families: Family4or6[] = ports.some((p) => p.ip6s.length) ? ['ipv4', 'ipv6'] : ['ipv4'];
  const of = (f: Family4or6, addresses: string[]) => addresses.filter((a) => a.includes(':') === (f === 'ipv6'));
  const sets: Sets = Object.fromEntries(
    families.flatMap((f) =>
      peerGroups(state).map((g) => [
        `${FAMILY[f].set}${groupId(g.tenant, g.group)}`,
        of(f, g.addresses).map(FAMILY[f].addr),
      ]),
    ),
  );
  const policies = new Map<string, SgPolicy & { family: Family4or6 }>();
  const entries = (f: Family4or6, bridge: string, addresses: string[], policy: SgPolicy) => {
    const own = inFamily(policy, f);
    const name = policyChain(own, f);
    policies.set(name, { ...own, family: f });
    return addresses.map((a) => `${ifname(bridge)} . ${FAMILY[f].addr(a)} : jump ${name}`);
  };
  const addressesOf = (f: Family4or6, p: (typeof ports)[number]) => (f === 'ipv4' ? [p.ip] : p.ip6s);
  const maps: Sets = Object.fromEntries(
    families.flatMap((f) => [
      [`sg_in${FAMILY[f].suffix}`, ports.flatMap((p) => entries(f, p.bridge, addressesOf(f, p), p.ingress))],
      [
        `sg_out${FAMILY[f].suffix}`,
        ports.filter((p) => p.egress).flatMap((p) => entries(f, p.bridge, addressesOf(f, p), p.egress!)),
      ],
    ]),
  );
  const chains = [...policies].flatMap(([name, policy]) => {
    const rules = [
      'ct state established,related return',
      ...(policy.family === 'ipv6' ? [ND] : []),
      ...policy.rules.map((r) => sgRule(r.rule, policy.tenant, policy.family)),
      'drop',
    ];
    return [`  chain ${name} {`, ...rules.map((r) => `    ${r}`), '  }'];
  });
  const rules = [...policies.values()].reduce((n, p) => n + p.rules.length + (p.family === 'ipv6' ? 3 : 2), 0);
  return { sets, maps, chains, rules, families };
}

/** The security groups' sets and maps: a group's members are addresses; the maps jump to chains. */
const sgType = (name: string) =>
  name.startsWith('sgm6_')
    ? 'ipv6_addr'
    : name.startsWith('sgm_')
      ? 'ipv4_addr'
      : `ifname . ${name.endsWith('6') ? 'ipv6_addr' : 'ipv4_addr'} : verdict`;

function renderSets(sets: Sets, types: Record<string, string>): string[] {
  return Object.entries(sets).flatMap(([name, elements]) => {
    const type = types[name] ?? sgType(name);
    // interface names are strings in nft syntax; the other parts of a concatenation are not
    const byName = /^(typeof iifname|ifname)\b/.test(type);
    const quoted = elements.map((e) =>
      e
        .split(' . ')
        .map((part, i) => (i === 0 && byName ? `"${part}"` : part))
        .join(' . '),
    );
    return [
      `  ${type.includes(' : ') ? 'map' : 'set'} ${name} {`,
      `    ${type.startsWith('typeof ') ? type : `type ${type}`}`,
      ...(quoted.length ? [`    elements = { ${quoted.join(', ')} }`] : []),
      '  }',
    ];
  });
}

const chain = (name: string, hook: string, rules: string[]) => [
  `  chain ${name} {`,
  `    ${hook}; policy accept;`,
  ...rules.map((r) => `    ${r}`),
  '  }',
];

export type Family = 'inet' | 'bridge';

/** What one table should hold, and what observing it compares. */
export interface TableView {
  /** hash of the rendered body ('' for no table) */
  hash: string;
  rules: number;
  sets: Sets;
}

export interface Ruleset {
  inet: string;
  bridge: string;
  /** how many rules each table holds: a table whose rules were flushed keeps its hash set */
  rules: Record<Family, number>;
  sets: Record<Family, Sets>;
}

/** The two tables' bodies for a host state (empty bodies when there are no networks). */
export function renderRuleset(state: HostState): Ruleset {
  const policy = tenantPolicy(state);
  const sg = sgRuleset(state);
  const ip = elements(policy.ipSets);
  const plainSets: Sets = { ...ip.sets, ...sg.sets };
  const flowFamilies: Family4or6[] = !policy.flowLimits ? [] : policy.ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
  const limits = flowFamilies.flatMap((f) => flowLimitRules(policy.flowLimits!, f));
  const forward = [...limits, ...sg.families.flatMap(sgForward), ...policy.forward.map(line)];
  const nat = policy.nat.map(line);
  const input = policy.any ? [...policy.overlay.map(line), ...policy.input.rules.map(keyedLine)] : [];
  const zones = policy.zones.map(line);
  const dnat = policy.dnat.map(line);
  const dnatLocal = policy.dnatLocal.map(line);
  const inet = !policy.any
    ? []
    : [
        // chains before the maps that jump to them
        ...renderSets(plainSets, ip.types),
        ...flowFamilies.flatMap(flowSets),
        ...sg.chains,
        ...renderSets(sg.maps, {}),
        ...(dnat.length ? chain('prerouting', 'type nat hook prerouting priority dstnat', dnat) : []),
        ...(dnatLocal.length ? chain('output', 'type nat hook output priority -100', dnatLocal) : []),
        ...chain('postrouting', 'type nat hook postrouting priority srcnat', nat),
        ...chain('forward', 'type filter hook forward priority filter', forward),
        ...chain('input', 'type filter hook input priority filter', input),
        // a tenant's bridged frames tracked apart from any other's with the same addresses
        ...(zones.length ? chain('zones', 'type filter hook prerouting priority raw', zones) : []),
      ];
  const br = elements(policy.bridgeSets);
  const rates = policy.packetRates;
  const pre = [...rates.map(rateRule), ...policy.bridgeIn.flatMap((b) => b.rules.map(keyedLine))];
  const post = policy.bridgeOut.flatMap((b) => b.rules.map(keyedLine));
  const bridge =
    pre.length === 0
      ? []
      : [
          ...renderSets(br.sets, br.types),
          ...rates.flatMap(rateSets),
          ...chain('prerouting', 'type filter hook prerouting priority -200', pre),
          ...(post.length ? chain('postrouting', 'type filter hook postrouting priority 200', post) : []),
        ];
  return {
    inet: inet.join('\n'),
    bridge: bridge.join('\n'),
    rules: {
      inet: nat.length + forward.length + input.length + zones.length + dnat.length + dnatLocal.length + sg.rules,
      bridge: pre.length + post.length,
    },
    sets: { inet: { ...plainSets, ...sg.maps }, bridge: br.sets },
  };
}
