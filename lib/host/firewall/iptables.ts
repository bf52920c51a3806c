// The iptables backend, for hosts without nft: the tenant policy (policy.ts) and the security
// groups (sg.ts) in chains of virtwire's own (iptables filter and nat for NAT, forwarding,
// isolation and host access; ebtables nat for per-port anti-spoofing and the uplinks' guards),
// reached by one jump from each built-in hook chain. Without sets, a keyed rule is repeated for
// each row, grouped by device. IPv6 has the same rules in ip6tables (a rule naming neither
// family's addresses holds for both, as in nft's inet table) and in ebtables' IPv6 matches; the
// one check ebtables cannot make, a neighbour advertisement's target, is made in ip6tables' raw
// table on the bridged frames br_netfilter hands it (the bridge's nf_call_ip6tables). A chain's
// name carries the hash of its table's rendered rules (VWF-<hash>), so a changed ruleset is new
// chains (iptables-chains.ts swaps them in); nothing in the built-in chains is touched but
// virtwire's own jumps.
import type { HostSecurityRule, HostState } from '../../../types/host.js';
import { hashOf } from './hash.js';
import { cidr, cidr6, ifname, ipv4, ipv6, ipv6Hex, mac, port } from './values.js';
import { TENANT_DEVICES, tenantPolicy, type FlowLimits, type PacketRate, type TenantPolicy } from './policy.js';
import {
  ICMP6_TYPES,
  isInSet,
  rowsOf,
  type Block,
  type Cond,
  type Field,
  type InSet,
  type KeyedRule,
  type RowSet,
  type Rule,
  type Value,
  type Verdict,
} from './rules.js';
import { policyId, ruleFamily, sgPorts, type SgPolicy, type SgPort } from './sg.js';

/** A chain of virtwire's own: its name is a role letter and its table's hash (a policy's: and its own). */
export const OWN_CHAIN = /^VW[A-Z]-[0-9a-f]{12}(-[0-9a-f]{6})?$/;

export interface Chain {
  name: string;
  /** ebtables: what a frame reaching the end does (RETURN, unlike ebtables' default ACCEPT) */
  policy?: string;
  rules: string[];
  /** the built-in chain that jumps here, if any */
  from?: string;
  /** where in `from` the jump goes (1-based); default the top. A rollback puts a jump back where it was. */
  position?: number;
}

/** One table (iptables filter or nat, ebtables nat) as virtwire wants it. */
export interface TableWant {
  tool: 'iptables' | 'ip6tables' | 'ebtables';
  table: string;
  chains: Chain[];
}

type IpFamily = 'ipv4' | 'ipv6';
const address = (a: string) => (a.includes('/') ? cidr(a) : `${ipv4(a)}/32`);
const address6 = (a: string) => (a.includes('/') ? cidr6(a) : `${ipv6(a)}/128`);
const bang = (c: Cond) => (c.not ? '! ' : '');

// nft's inet and bridge tables hold both families: a rule that names neither family's addresses
// or messages holds for both. These backends have a tool per family: each gets the rules of its
// family and those of both.
const V4_ONLY = new Set<Field>(['saddr', 'daddr', 'icmpType', 'dhcpChaddr', 'arpSpa', 'arpTpa', 'arpSha']);
const V6_ONLY = new Set<Field>(['saddr6', 'daddr6', 'icmp6Type', 'ndTarget', 'fragment']);
/** What ebtables cannot read of an IPv6 packet: checked in ip6tables' raw table instead. */
const IP6TABLES_ONLY = new Set<Field>(['ndTarget', 'fragment']);

/** The family a rule's conditions tie it to; none: it holds for both. */
function familyOf(conds: (Cond | InSet)[]): IpFamily | undefined {
  for (const c of conds) {
    if (isInSet(c)) continue;
    if (V6_ONLY.has(c.field) || (c.field === 'etherType' && c.value === 'ip6')) return 'ipv6';
    if (V4_ONLY.has(c.field) || c.field === 'etherType') return 'ipv4';
  }
  return undefined;
}
const ofFamily =
  (f: IpFamily) =>
  (r: { conds: (Cond | InSet)[] }): boolean =>
    (familyOf(r.conds) ?? f) === f;

/** An ICMPv6 type by its number (what both tools take). */
function icmp6(v: Value): number {
  const n = ICMP6_TYPES[String(v)];
  if (n === undefined) throw new Error(`unknown ICMPv6 type ${String(v)}`);
  return n;
}

/** A rule with a list of ICMPv6 types (one nft match) as one rule per type: iptables and ebtables take one. */
function perType(conds: Cond[]): Cond[][] {
  const i = conds.findIndex((c) => c.field === 'icmp6Type' && Array.isArray(c.value));
  if (i < 0) return [conds];
  return (conds[i]!.value as string[]).flatMap((t) => perType(conds.map((c, j) => (j === i ? { ...c, value: t } : c))));
}

/**
 * u32's test that a neighbour advertisement's target (ICMPv6 bytes 8-23, after a 40-byte IPv6
 * header) is `a`. It also requires that no extension header comes first (next header 58): one
 * would move the ICMPv6 message and let other bytes stand where the target is read.
 */
function ndTargetIs(a: string): string {
  const hex = ipv6Hex(a);
  const words = [0, 1, 2, 3].map((i) => `${48 + 4 * i}=0x${hex.slice(8 * i, 8 * i + 8)}`);
  return ['4>>8&0xFF=0x3A', ...words].join('&&');
}

/**
 * u32's test that a UDP payload's DHCP chaddr (bytes 28-33; the header's 8 before) is `m`: from
 * the IP header's length, the transport header's first 4 of its bytes at 36, the last 2 at 40.
 */
function chaddrIs(m: string): string {
  const hex = mac(m).replaceAll(':', '');
  return `0>>22&0x3C@36=0x${hex.slice(0, 8)}&&0>>22&0x3C@40>>16=0x${hex.slice(8)}`;
}

/** Where a rule is rendered: its family's tool, and whether its devices are bridge ports (br_netfilter's physdev). */
interface IpContext {
  family: IpFamily;
  bridged?: boolean;
}
const V4: IpContext = { family: 'ipv4' };

/** One iptables or ip6tables match, in the rule's own order (a dport follows its protocol). */
function ipMatch(c: Cond, proto: string, at: IpContext): string {
  const v = String(c.value);
  switch (c.field) {
    case 'iif':
      return at.bridged ? `-m physdev ${bang(c)}--physdev-in ${ifname(v)}` : `${bang(c)}-i ${ifname(v)}`;
    case 'oif':
      if (at.bridged) throw new Error('a bridge port is known on the way in only, in the raw table');
      return `${bang(c)}-o ${ifname(v)}`;
    case 'saddr':
      return `${bang(c)}-s ${address(v)}`;
    case 'daddr':
      return `${bang(c)}-d ${address(v)}`;
    case 'saddr6':
      return `${bang(c)}-s ${address6(v)}`;
    case 'daddr6':
      return `${bang(c)}-d ${address6(v)}`;
    case 'icmp6Type':
      return `-p ipv6-icmp -m icmp6 --icmpv6-type ${icmp6(c.value)}`;
    case 'ndTarget':
      return `-m u32 ${bang(c)}--u32 ${ndTargetIs(v)}`;
    case 'fragment':
      // (br_netfilter reassembles before the raw table where conntrack is on, as it is for
      // virtwire's chains: the whole message is what the target's check reads)
      if (v !== 'yes') throw new Error(`unknown fragment ${v}`);
      return '-m frag';
    case 'etherType':
      // the tool is the family: nothing to match
      if ((v === 'ip6') !== (at.family === 'ipv6')) throw new Error(`ether type ${v} in ${at.family}`);
      return '';
    case 'ct':
      return '-m conntrack --ctstate RELATED,ESTABLISHED';
    case 'ctStatus':
      if (v !== 'dnat') throw new Error(`unknown conntrack status ${v}`);
      return '-m conntrack --ctstate DNAT';
    case 'daddrType':
      if (v !== 'local') throw new Error(`unknown address type ${v}`);
      return '-m addrtype --dst-type LOCAL';
    case 'l4proto':
      if (!['tcp', 'udp', 'icmp'].includes(v)) throw new Error(`unknown protocol ${v}`);
      return `-p ${v}`;
    case 'dport':
      return `-m ${proto} --dport ${port(Number(c.value))}`;
    case 'udpDport':
      return Array.isArray(c.value)
        ? `-p udp -m multiport --dports ${c.value.map((x) => port(Number(x))).join(',')}`
        : `-p udp -m udp --dport ${port(Number(c.value))}`;
    case 'icmpType':
      if (v !== 'echo-request') throw new Error(`unknown ICMP type ${v}`);
      return '-p icmp -m icmp --icmp-type 8';
    case 'etherSrc':
      return `-m mac ${bang(c)}--mac-source ${mac(v)}`;
    case 'dhcpChaddr':
      return `-m u32 ${bang(c)}--u32 ${chaddrIs(v)}`;
    default:
      throw new Error(`iptables cannot match ${c.field}`);
  }
}

const TARGETS: Record<Exclude<Verdict, object>, string> = {
  accept: 'ACCEPT',
  pass: 'RETURN',
  return: 'RETURN',
  drop: 'DROP',
  masquerade: 'MASQUERADE',
};
function target(v: Verdict): string {
  if (typeof v !== 'object') return TARGETS[v];
  if ('zone' in v) return `CT --zone ${v.zone}`;
  if ('snat' in v) return `SNAT --to-source ${ipv4(v.snat)}`;
  return `DNAT --to-destination ${ipv4(v.dnat)}${v.port ? `:${port(v.port)}` : ''}`;
}

/** A rule's verdict, or a jump to a chain: a device set's (by name) or a sub-chain of rows (by id). */
type Target = Verdict | string | { sub: string };

function targetOf(v: Target, subName: (id: string) => string): string {
  if (typeof v === 'object' && 'sub' in v) return subName(v.sub);
  return typeof v === 'string' && !(v in TARGETS) ? v : target(v as Verdict);
}

const NO_SUBS = (id: string): string => {
  throw new Error(`no sub-chain ${id} here`);
};

function ipLine(conds: Cond[], v: Target, at: IpContext = V4, subName = NO_SUBS): string {
  let proto = '';
  const parts = conds.map((c) => {
    if (c.field === 'l4proto') proto = String(c.value);
    return ipMatch(c, proto, at);
  });
  return [...parts.filter(Boolean), `-j ${targetOf(v, subName)}`].join(' ');
}

/**
 * One ebtables rule: the device, the source MAC, then the protocol and its options in the order
 * ebtables reads them (`-p ARP --arp-…`, `-p IPv4 --ip-…`).
 */
function ebLine(conds: Cond[], v: Verdict | { sub: string }, subName: (id: string) => string): string {
  const get = (f: Cond['field']) => conds.find((c) => c.field === f);
  const opt = (f: Cond['field'], name: string, render: (c: Cond) => string) => {
    const c = get(f);
    return c ? [`${name} ${c.not ? '! ' : ''}${render(c)}`] : [];
  };
  const ip4 = (c: Cond) => ipv4(String(c.value));
  const ports = (c: Cond) => {
    const list = Array.isArray(c.value) ? c.value.map((x) => port(Number(x))) : [port(Number(c.value))];
    const [lo, hi] = [Math.min(...list), Math.max(...list)];
    if (hi - lo + 1 !== list.length) throw new Error(`ebtables matches a port range, not ${list.join(',')}`);
    return lo === hi ? `${lo}` : `${lo}:${hi}`;
  };
  const arp = [
    ...opt('arpSpa', '--arp-ip-src', ip4),
    ...opt('arpTpa', '--arp-ip-dst', ip4),
    ...opt('arpSha', '--arp-mac-src', (c) => mac(String(c.value))),
  ];
  const udp = get('udpSport') || get('udpDport') ? ['--ip-proto udp'] : [];
  const ip = [
    ...opt('saddr', '--ip-src', ip4),
    ...opt('daddr', '--ip-dst', ip4),
    ...udp,
    ...opt('udpSport', '--ip-sport', ports),
    ...opt('udpDport', '--ip-dport', ports),
  ];
  const ip6 = (c: Cond) => address6(String(c.value));
  const icmp = get('icmp6Type');
  const ipv6Opts = [
    ...opt('saddr6', '--ip6-src', ip6),
    ...opt('daddr6', '--ip6-dst', ip6),
    ...(icmp
      ? ['--ip6-proto ipv6-icmp', `--ip6-icmp-type ${icmp6(icmp.value)}`]
      : udp.length
        ? ['--ip6-proto udp']
        : []),
    ...opt('udpSport', '--ip6-sport', ports),
    ...opt('udpDport', '--ip6-dport', ports),
  ];
  for (const c of conds) if (IP6TABLES_ONLY.has(c.field)) throw new Error(`ebtables cannot read ${c.field}`);
  const proto =
    familyOf(conds) === 'ipv6'
      ? ['-p IPv6', ...ipv6Opts]
      : arp.length || get('etherType')?.value === 'arp'
        ? ['-p ARP', ...arp]
        : ip.length || get('etherType')?.value === 'ip'
          ? ['-p IPv4', ...ip]
          : [];
  return [
    ...opt('iif', '-i', (c) => ifname(String(c.value))),
    ...opt('oif', '-o', (c) => ifname(String(c.value))),
    ...opt('etherSrc', '-s', (c) => mac(String(c.value))),
    ...proto,
    `-j ${targetOf(v, subName)}`,
  ].join(' ');
}

/** A rule of a block for one row, or a jump to a sub-chain of rows. */
interface Row {
  conds: Cond[];
  verdict: Verdict | { sub: string };
}

/** A chain of rows that one row jumps to (several values, any of which is right): its id names it. */
interface SubChain {
  id: string;
  rows: Row[];
}

/** What marks a sub-chain's jump as its values' family (ebtables matches IPv6 only after `-p IPv6`). */
const familyMark = (field: Field): Cond[] =>
  V6_ONLY.has(field)
    ? [{ field: 'etherType', value: 'ip6' }]
    : field === 'saddr' || field === 'daddr'
      ? [{ field: 'etherType', value: 'ip' }]
      : [];

/** A keyed rule with `not`, for one device: its rows grouped by every field but the last. */
function notOwnRows(r: KeyedRule, dev: string, sets: Record<string, RowSet>, subs: SubChain[]): Row[] {
  const last = r.key.length - 1;
  const field = r.key[last]!;
  const groups = new Map<string, Value[][]>();
  for (const row of rowsOf(sets[r.set], dev)) {
    const id = JSON.stringify(row.slice(0, last));
    const group = groups.get(id) ?? [];
    if (!group.some((g) => g[last] === row[last])) group.push(row);
    groups.set(id, group);
  }
  return [...groups].flatMap(([id, rows]): Row[] => {
    const prefix = r.key.slice(0, last).map((f, i) => ({ field: f, value: rows[0]![i]! }));
    // one value (a port's MAC): the key's last field must be it where the others are
    if (rows.length === 1)
      return [{ conds: [...prefix, ...r.conds, { field, value: rows[0]![last]!, not: true }], verdict: r.verdict }];
    // several (a port's link-local, SLAAC and pinned addresses): a chain returns for each, and
    // what reaches its end meets the verdict
    const sub = `${r.set} ${r.key.join('.')} ${id}`;
    subs.push({
      id: sub,
      rows: [
        ...rows.map((row): Row => ({ conds: [{ field, value: row[last]! }], verdict: 'pass' })),
        { conds: [], verdict: r.verdict },
      ],
    });
    return [{ conds: [...prefix, ...familyMark(field), ...r.conds], verdict: { sub } }];
  });
}

/** A block's keyed rules, once per row, every rule for one device before the next device's. */
function expand(block: Block, sets: Record<string, RowSet>, subs: SubChain[] = []): Row[] {
  return (sets[block.devices]?.rows ?? []).flatMap(([device]) =>
    block.rules.flatMap((r): Row[] => {
      const dev = String(device);
      if (r.not) {
        // a device of `members` checked against its rows. (nft, with one lookup, also drops what
        // matches no row's other fields: here, such a packet passes — e.g. a DHCP message from a
        // MAC of no port, which the ports' and uplinks' guards never let onto a bridge.)
        if (!rowsOf(sets[r.members!], dev).length) return [];
        return notOwnRows(r, dev, sets, subs);
      }
      return rowsOf(sets[r.set], dev).map((row) => ({
        conds: [...r.key.map((field, i) => ({ field, value: row[i]! })), ...r.conds],
        verdict: r.verdict,
      }));
    }),
  );
}

const ip6tablesOnly = (r: KeyedRule) =>
  r.key.some((f) => IP6TABLES_ONLY.has(f)) || r.conds.some((c) => IP6TABLES_ONLY.has(c.field));
/** A block's rules ebtables can check, or (`inIp6tables`) the ones only ip6tables can (a target, fragments). */
const partOf = (blocks: Block[], inIp6tables: boolean): Block[] =>
  blocks
    .map((b) => ({ ...b, rules: b.rules.filter((r) => ip6tablesOnly(r) === inIp6tables) }))
    .filter((b) => b.rules.length);

/** A sub-chain's name in a table: the table's role name and a short hash of its id. */
const subNamer = (name: (role: string) => string) => (id: string) => `${name('M')}-${hashOf(id).slice(0, 6)}`;

/** A literal rule; a condition on a device set jumps to `setChain`, which lists the set's devices. */
const literal = (r: Rule, setChain: string, at: IpContext = V4) =>
  perType(r.conds.filter((c): c is Cond => !isInSet(c))).map((conds) =>
    ipLine(conds, r.conds.some(isInSet) ? setChain : r.verdict, at),
  );

/** A rule whose device-set condition returns: one RETURN per device of the set, where the rule stands. */
const inPlace = (r: Rule, sets: Record<string, RowSet>) =>
  r.verdict === 'return' && r.conds.some(isInSet) ? setChainRules([r], sets) : literal(r, '');

/** The chain behind a device-set condition: one rule per device (tenants, not their pairs). */
function setChainRules(rules: Rule[], sets: Record<string, RowSet>): string[] {
  const used = rules.flatMap((r) => r.conds.filter(isInSet).map((c) => ({ c, verdict: r.verdict })))[0];
  if (!used) return [];
  const { c, verdict } = used as { c: InSet; verdict: Verdict };
  return (sets[c.set]?.rows ?? []).map(([d]) => ipLine([{ field: c.field, value: d! }], verdict));
}

/** Rows as ip(6)tables lines, one per ICMPv6 type where a row names several. */
const ipRowLines = (rows: Row[], at: IpContext, subName = NO_SUBS): string[] =>
  rows.flatMap((r) => perType(r.conds).map((conds) => ipLine(conds, r.verdict, at, subName)));

/** Rows as ebtables lines, likewise. */
const ebRowLines = (rows: Row[], subName: (id: string) => string): string[] =>
  rows.flatMap((r) => perType(r.conds).map((conds) => ebLine(conds, r.verdict, subName)));

// Security groups (sg.ts) without nft's sets and maps: one dispatch rule per member
// port and direction, one chain per policy; a group peer is one rule per member address.
// multiport takes at most 15 ports (a range counts twice): longer lists become several rules.
function portMatches(protocol: 'tcp' | 'udp', ports: [number, number][] | undefined): string[] {
  if (!ports) return [`-p ${protocol}`];
  const chunks: string[][] = [[]];
  let used = 0;
  for (const [lo, hi] of ports) {
    const cost = lo === hi ? 1 : 2;
    if (used + cost > 15) {
      chunks.push([]);
      used = 0;
    }
    chunks.at(-1)!.push(lo === hi ? `${port(lo)}` : `${port(lo)}:${port(hi)}`);
    used += cost;
  }
  return chunks.map((c) => `-p ${protocol} -m multiport --dports ${c.join(',')}`);
}

/** An address (a host) or a CIDR in a family's rule. */
const addressIn = (f: IpFamily, a: string) => (f === 'ipv4' ? address(a) : address6(a));

/** A rule's part in one family (its ethertype and its CIDR peer's family say which it has). */
function sgRules(rule: HostSecurityRule, f: IpFamily): string[] {
  if (!ruleFamily(rule, f)) return [];
  const side = rule.direction === 'ingress' ? '-s' : '-d';
  const peers =
    'cidr' in rule.peer
      ? [`${side} ${addressIn(f, rule.peer.cidr)} `]
      : 'group' in rule.peer
        ? rule.peer.addresses
            .filter((a) => a.includes(':') === (f === 'ipv6'))
            .map((a) => `${side} ${addressIn(f, a)} `)
        : [''];
  const protocols =
    rule.protocol === 'tcp' || rule.protocol === 'udp'
      ? portMatches(rule.protocol, rule.ports).map((m) => `${m} `)
      : rule.protocol === 'icmp'
        ? [f === 'ipv4' ? '-p icmp ' : '-p ipv6-icmp ']
        : [''];
  return peers.flatMap((peer) => protocols.map((proto) => `${peer}${proto}-j RETURN`));
}

// a port in groups still resolves its neighbours and is resolved (nft's sg chains return them too)
const ND_RETURN = [135, 136].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`);

function sgChains(state: HostState, name: (role: string) => string, f: IpFamily): Chain[] {
  const addressesOf = (p: SgPort) => (f === 'ipv4' ? [p.ip] : p.ip6s);
  const ports = sgPorts(state).filter((p) => addressesOf(p).length);
  if (ports.length === 0) return [];
  const policies = new Map<string, SgPolicy>();
  const jump = (policy: SgPolicy) => {
    const chain = `${name('C')}-${policyId(policy, (r) => sgRules(r, f).join('\n')).slice(0, 6)}`;
    policies.set(chain, policy);
    return chain;
  };
  const dispatch = ports.flatMap((p) =>
    addressesOf(p).flatMap((a) => [
      `-d ${addressIn(f, a)} -o ${ifname(p.bridge)} -j ${jump(p.ingress)}`,
      ...(p.egress ? [`-s ${addressIn(f, a)} -i ${ifname(p.bridge)} -j ${jump(p.egress)}`] : []),
    ]),
  );
  return [
    ...[...policies].map(([chain, policy]) => ({
      name: chain,
      rules: [
        '-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
        ...(f === 'ipv6' ? ND_RETURN : []),
        ...policy.rules.flatMap((r) => sgRules(r.rule, f)),
        '-j DROP',
      ],
    })),
    { name: name('G'), rules: dispatch },
  ];
}

/** Flow limits (policy.ts) per tenant device: hashlimit's rate, connlimit's count, per source address. */
function flowLimitLines(l: FlowLimits, sets: Record<string, RowSet>, f: IpFamily): string[] {
  const [table, mask] = f === 'ipv4' ? ['vwflow', 32] : ['vwflow6', 128];
  return (sets[TENANT_DEVICES]?.rows ?? []).flatMap(([d]) => [
    `-i ${ifname(String(d))} -m conntrack --ctstate NEW -m hashlimit --hashlimit-above ${l.newPerSecond}/sec --hashlimit-burst ${l.burst} --hashlimit-mode srcip --hashlimit-name ${table} -j DROP`,
    `-i ${ifname(String(d))} -m conntrack --ctstate NEW -m connlimit --connlimit-above ${l.flows} --connlimit-mask ${mask} --connlimit-saddr -j DROP`,
  ]);
}

// ebtables' limit takes at most 10,000 packets a second and a burst of 10,000 per rule: a higher
// rate is split over several rules, each a bucket of its own (a packet that finds one empty is
// taken by the next), that add up to it.
const LIMIT_MAX = 10_000;

/** Packet-rate caps (policy.ts) per port: under the rate, on to the other checks; over it, dropped. */
function packetRateLines(rates: PacketRate[], sets: Record<string, RowSet>): string[] {
  return rates.flatMap(({ rate, burst, set }) => {
    const n = Math.ceil(rate / LIMIT_MAX);
    const share = (total: number, i: number) => Math.floor(total / n) + (i < total % n ? 1 : 0);
    return (sets[set]?.rows ?? [])
      .map(([port]) => String(port))
      .flatMap((p) => [
        ...Array.from(
          { length: n },
          (_, i) =>
            `-i ${ifname(p)} --limit ${share(rate, i)}/sec --limit-burst ${Math.max(1, share(burst, i))} -j RETURN`,
        ),
        `-i ${ifname(p)} -j DROP`,
      ]);
  });
}

/** Names each chain after its role and the hash of everything its table holds. */
function named(tool: TableWant['tool'], table: string, build: (name: (role: string) => string) => Chain[]): TableWant {
  const draft = build((role) => `VW${role}-`);
  const hash = hashOf(JSON.stringify(draft)).slice(0, 12);
  return { tool, table, chains: build((role) => `VW${role}-${hash}`) };
}

/** Sub-chains as chains of a table, named by `subName`; ebtables' return at their end, like the others. */
const subChains = (subs: SubChain[], subName: (id: string) => string, lines: (rows: Row[]) => string[]): Chain[] =>
  subs.map((c) => ({ name: subName(c.id), policy: 'RETURN', rules: lines(c.rows) }));

/** The filter table of one family: flow limits, security groups, forwarding, then what reaches the host. */
function filterTable(state: HostState, policy: TenantPolicy, f: IpFamily): TableWant {
  const at: IpContext = { family: f };
  const forward = policy.forward.filter(ofFamily(f));
  const limits = policy.flowLimits && (f === 'ipv4' || policy.ipv6) ? policy.flowLimits : undefined;
  return named(f === 'ipv4' ? 'iptables' : 'ip6tables', 'filter', (name) => {
    if (!policy.any) return [];
    const subs: SubChain[] = [];
    const subName = subNamer(name);
    const input = ipRowLines(expand(policy.input, policy.ipSets, subs).filter(ofFamily(f)), at, subName);
    const groups = sgChains(state, name, f);
    return [
      { name: name('X'), rules: setChainRules(forward, policy.ipSets) },
      ...groups,
      ...subChains(subs, subName, (rows) => ipRowLines(rows, at)),
      {
        name: name('F'),
        rules: [
          ...(limits ? flowLimitLines(limits, policy.ipSets, f) : []),
          ...(groups.length ? [`-j ${name('G')}`] : []),
          ...forward.flatMap((r) => literal(r, name('X'), at)),
        ],
        from: 'FORWARD',
      },
      {
        name: name('I'),
        rules: [...policy.overlay.filter(ofFamily(f)).flatMap((r) => literal(r, '', at)), ...input],
        from: 'INPUT',
      },
    ];
  });
}

/**
 * The nat table of one family: what arrives translated to a way in (IPv4 only), what the host
 * sends likewise, and each tenant's way out. IPv6 has a chain only where a rule is its own (NAT66).
 */
function natTable(policy: TenantPolicy, f: IpFamily): TableWant {
  const at: IpContext = { family: f };
  const own = (rules: Rule[]) =>
    rules.some((r) => familyOf(r.conds) === f) || f === 'ipv4' ? rules.filter(ofFamily(f)) : [];
  const [dnat, dnatLocal, nat] = [own(policy.dnat), own(policy.dnatLocal), own(policy.nat)];
  return named(f === 'ipv4' ? 'iptables' : 'ip6tables', 'nat', (name) => [
    ...(dnat.length
      ? [{ name: name('D'), rules: dnat.flatMap((r) => inPlace(r, policy.ipSets)), from: 'PREROUTING' }]
      : []),
    ...(dnatLocal.length
      ? [{ name: name('O'), rules: dnatLocal.flatMap((r) => literal(r, '', at)), from: 'OUTPUT' }]
      : []),
    ...(nat.length ? [{ name: name('N'), rules: nat.flatMap((r) => literal(r, '', at)), from: 'POSTROUTING' }] : []),
  ]);
}

/**
 * The raw table of one family: namespaced tenants' conntrack zones, and for IPv6 the ports' check
 * of a neighbour advertisement's target, on the bridged frames br_netfilter passes to ip6tables
 * (ebtables, before it, checked everything else of the port's IPv6).
 */
function rawTable(policy: TenantPolicy, f: IpFamily): TableWant {
  const at: IpContext = { family: f, bridged: true };
  const zones = f === 'ipv4' || policy.ipv6 ? policy.zones : [];
  const nd = f === 'ipv6' ? partOf(policy.bridgeIn, true) : [];
  return named(f === 'ipv4' ? 'iptables' : 'ip6tables', 'raw', (name) => {
    const subs: SubChain[] = [];
    const subName = subNamer(name);
    const guard = ipRowLines(
      nd.flatMap((b) => expand(b, policy.bridgeSets, subs)),
      at,
      subName,
    );
    return [
      ...(zones.length
        ? [{ name: name('Z'), rules: zones.flatMap((r) => literal(r, '', { family: f })), from: 'PREROUTING' }]
        : []),
      ...subChains(subs, subName, (rows) => ipRowLines(rows, at)),
      ...(guard.length ? [{ name: name('A'), rules: guard, from: 'PREROUTING' }] : []),
    ];
  });
}

/** ebtables' nat table: the ports' and uplinks' guards (but what only ip6tables can read), the packet-rate caps. */
function bridgeTable(policy: TenantPolicy): TableWant {
  const rates = packetRateLines(policy.packetRates, policy.bridgeSets);
  return named('ebtables', 'nat', (name) => {
    const subs: SubChain[] = [];
    const subName = subNamer(name);
    const lines = (blocks: Block[]) =>
      ebRowLines(
        partOf(blocks, false).flatMap((b) => expand(b, policy.bridgeSets, subs)),
        subName,
      );
    const bridgeIn = lines(policy.bridgeIn);
    const bridgeOut = lines(policy.bridgeOut);
    return [
      ...subChains(subs, subName, (rows) => ebRowLines(rows, NO_SUBS)),
      ...(bridgeIn.length ? [{ name: name('S'), policy: 'RETURN', rules: bridgeIn, from: 'PREROUTING' }] : []),
      // a chain of its own: the cap's RETURN must not skip the ports' guard
      ...(rates.length ? [{ name: name('R'), policy: 'RETURN', rules: rates, from: 'PREROUTING' }] : []),
      ...(bridgeOut.length ? [{ name: name('P'), policy: 'RETURN', rules: bridgeOut, from: 'POSTROUTING' }] : []),
    ];
  });
}

export function desiredTables(state: HostState): TableWant[] {
  const policy = tenantPolicy(state);
  return [
    filterTable(state, policy, 'ipv4'),
    natTable(policy, 'ipv4'),
    bridgeTable(policy),
    rawTable(policy, 'ipv4'),
    filterTable(state, policy, 'ipv6'),
    natTable(policy, 'ipv6'),
    rawTable(policy, 'ipv6'),
  ];
}
