// The iptables backend, for hosts without nft: the tenant policy (policy.ts) and the security
// groups (sg.ts) in chains of virtwire's own (iptables filter and nat for NAT, forwarding,
// isolation and host access; ebtables nat for per-port anti-spoofing and the uplinks' guards),
// reached by one jump from each built-in hook chain. Without sets, a keyed rule is repeated for
// each row, grouped by device. A chain's name carries the hash of its table's rendered rules
// (VWF-<hash>), so a changed ruleset is new chains (iptables-chains.ts swaps them in); nothing in
// the built-in chains is touched but virtwire's own jumps.
import type { HostSecurityRule, HostState } from '../../../types/host.js';
import { hashOf } from './hash.js';
import { cidr, ifname, ipv4, mac, port } from './values.js';
import { TENANT_DEVICES, tenantPolicy, type FlowLimits, type PacketRate } from './policy.js';
import { isInSet, rowsOf, type Block, type Cond, type InSet, type RowSet, type Rule, type Verdict } from './rules.js';
import { policyId, ruleFamily, sgPorts, type SgPolicy } from './sg.js';

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

const address = (a: string) => (a.includes('/') ? cidr(a) : `${ipv4(a)}/32`);
const bang = (c: Cond) => (c.not ? '! ' : '');

/**
 * u32's test that a UDP payload's DHCP chaddr (bytes 28-33; the header's 8 before) is `m`: from
 * the IP header's length, the transport header's first 4 of its bytes at 36, the last 2 at 40.
 */
function chaddrIs(m: string): string {
  const hex = mac(m).replaceAll(':', '');
  return `0>>22&0x3C@36=0x${hex.slice(0, 8)}&&0>>22&0x3C@40>>16=0x${hex.slice(8)}`;
}

/** One iptables match, in the rule's own order (a dport follows its protocol). */
function ipMatch(c: Cond, proto: string): string {
  const v = String(c.value);
  switch (c.field) {
    case 'iif':
      return `${bang(c)}-i ${ifname(v)}`;
    case 'oif':
      return `${bang(c)}-o ${ifname(v)}`;
    case 'saddr':
      return `${bang(c)}-s ${address(v)}`;
    case 'daddr':
      return `${bang(c)}-d ${address(v)}`;
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

function ipLine(conds: Cond[], v: Verdict | string): string {
  let proto = '';
  const parts = conds.map((c) => {
    if (c.field === 'l4proto') proto = String(c.value);
    return ipMatch(c, proto);
  });
  return [...parts, `-j ${typeof v === 'string' && !(v in TARGETS) ? v : target(v as Verdict)}`].join(' ');
}

/**
 * One ebtables rule: the device, the source MAC, then the protocol and its options in the order
 * ebtables reads them (`-p ARP --arp-…`, `-p IPv4 --ip-…`).
 */
function ebLine(conds: Cond[], v: Verdict): string {
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
  const type = get('etherType')?.value;
  const proto =
    arp.length || type === 'arp' ? ['-p ARP', ...arp] : ip.length || type === 'ip' ? ['-p IPv4', ...ip] : [];
  return [
    ...opt('iif', '-i', (c) => ifname(String(c.value))),
    ...opt('oif', '-o', (c) => ifname(String(c.value))),
    ...opt('etherSrc', '-s', (c) => mac(String(c.value))),
    ...proto,
    `-j ${target(v)}`,
  ].join(' ');
}

/** A block's keyed rules, once per row, every rule for one device before the next device's. */
function expand(block: Block, sets: Record<string, RowSet>): { conds: Cond[]; verdict: Verdict }[] {
  return (sets[block.devices]?.rows ?? []).flatMap(([device]) =>
    block.rules.flatMap((r) => {
      const dev = String(device);
      if (r.not) {
        // a device of `members` checked against each of its rows: the key's last field must be
        // the row's where the others are. (nft, with one lookup, also drops what matches no row's
        // other fields: here, such a packet passes — e.g. a DHCP message from a MAC of no port,
        // which the ports' and uplinks' guards never let onto a bridge.)
        if (!rowsOf(sets[r.members!], dev).length) return [];
        const last = r.key.length - 1;
        return rowsOf(sets[r.set], dev).map((row) => ({
          conds: [
            ...r.key.slice(0, last).map((field, i) => ({ field, value: row[i]! })),
            ...r.conds,
            { field: r.key[last]!, value: row[last]!, not: true },
          ],
          verdict: r.verdict,
        }));
      }
      return rowsOf(sets[r.set], dev).map((row) => ({
        conds: [...r.key.map((field, i) => ({ field, value: row[i]! })), ...r.conds],
        verdict: r.verdict,
      }));
    }),
  );
}

/** A literal rule; a condition on a device set jumps to `setChain`, which lists the set's devices. */
const literal = (r: Rule, setChain: string) =>
  r.conds.some(isInSet)
    ? ipLine(
        r.conds.filter((c): c is Cond => !isInSet(c)),
        setChain,
      )
    : ipLine(r.conds as Cond[], r.verdict);

/** A rule whose device-set condition returns: one RETURN per device of the set, where the rule stands. */
const inPlace = (r: Rule, sets: Record<string, RowSet>) =>
  r.verdict === 'return' && r.conds.some(isInSet) ? setChainRules([r], sets) : [literal(r, '')];

/** The chain behind a device-set condition: one rule per device (tenants, not their pairs). */
function setChainRules(rules: Rule[], sets: Record<string, RowSet>): string[] {
  const used = rules.flatMap((r) => r.conds.filter(isInSet).map((c) => ({ c, verdict: r.verdict })))[0];
  if (!used) return [];
  const { c, verdict } = used as { c: InSet; verdict: Verdict };
  return (sets[c.set]?.rows ?? []).map(([d]) => ipLine([{ field: c.field, value: d! }], verdict));
}

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

/** A rule's IPv4 part (this backend guards no IPv6: a network with it is refused before this). */
function sgRules(rule: HostSecurityRule): string[] {
  if (!ruleFamily(rule, 'ipv4')) return [];
  const side = rule.direction === 'ingress' ? '-s' : '-d';
  const peers =
    'cidr' in rule.peer
      ? [`${side} ${cidr(rule.peer.cidr)} `]
      : 'group' in rule.peer
        ? rule.peer.addresses.filter((a) => !a.includes(':')).map((a) => `${side} ${ipv4(a)}/32 `)
        : [''];
  const protocols =
    rule.protocol === 'tcp' || rule.protocol === 'udp'
      ? portMatches(rule.protocol, rule.ports).map((m) => `${m} `)
      : rule.protocol === 'icmp'
        ? ['-p icmp ']
        : [''];
  return peers.flatMap((peer) => protocols.map((proto) => `${peer}${proto}-j RETURN`));
}

const policySuffix = (policy: SgPolicy) => policyId(policy, (r) => sgRules(r).join('\n')).slice(0, 6);

function sgChains(state: HostState, name: (role: string) => string): Chain[] {
  const ports = sgPorts(state);
  if (ports.length === 0) return [];
  const policies = new Map<string, SgPolicy>();
  const jump = (policy: SgPolicy) => {
    const chain = `${name('C')}-${policySuffix(policy)}`;
    policies.set(chain, policy);
    return chain;
  };
  const dispatch = ports.flatMap((p) => [
    `-d ${ipv4(p.ip)}/32 -o ${ifname(p.bridge)} -j ${jump(p.ingress)}`,
    ...(p.egress ? [`-s ${ipv4(p.ip)}/32 -i ${ifname(p.bridge)} -j ${jump(p.egress)}`] : []),
  ]);
  return [
    ...[...policies].map(([chain, policy]) => ({
      name: chain,
      rules: [
        '-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
        ...policy.rules.flatMap((r) => sgRules(r.rule)),
        '-j DROP',
      ],
    })),
    { name: name('G'), rules: dispatch },
  ];
}

/** Flow limits (policy.ts) per tenant device: hashlimit's rate, connlimit's count, per source address. */
function flowLimitLines(l: FlowLimits, sets: Record<string, RowSet>): string[] {
  return (sets[TENANT_DEVICES]?.rows ?? []).flatMap(([d]) => [
    `-i ${ifname(String(d))} -m conntrack --ctstate NEW -m hashlimit --hashlimit-above ${l.newPerSecond}/sec --hashlimit-burst ${l.burst} --hashlimit-mode srcip --hashlimit-name vwflow -j DROP`,
    `-i ${ifname(String(d))} -m conntrack --ctstate NEW -m connlimit --connlimit-above ${l.flows} --connlimit-mask 32 --connlimit-saddr -j DROP`,
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

// nft's `inet` table holds both families: a rule that names no IPv4 address or ICMP type holds
// for IPv6 too. ip6tables gets those rules, so the fallback drops what nft drops.
const V4_ONLY = new Set<Cond['field']>(['saddr', 'daddr', 'icmpType', 'dhcpChaddr']);
const familyNeutral = (conds: (Cond | InSet)[]) => conds.every((c) => isInSet(c) || !V4_ONLY.has(c.field));

export function desiredTables(state: HostState): TableWant[] {
  const policy = tenantPolicy(state);
  const ipRows = (block: Block) => expand(block, policy.ipSets).map((r) => ipLine(r.conds, r.verdict));
  const v6Forward = policy.forward.filter((r) => familyNeutral(r.conds));
  const ebRows = (blocks: Block[]) =>
    blocks.flatMap((b) => expand(b, policy.bridgeSets).map((r) => ebLine(r.conds, r.verdict)));
  const bridgeIn = ebRows(policy.bridgeIn);
  const bridgeOut = ebRows(policy.bridgeOut);
  const rates = packetRateLines(policy.packetRates, policy.bridgeSets);
  return [
    named('iptables', 'filter', (name) =>
      !policy.any
        ? []
        : [
            { name: name('X'), rules: setChainRules(policy.forward, policy.ipSets) },
            ...sgChains(state, name),
            {
              name: name('F'),
              rules: [
                ...(policy.flowLimits ? flowLimitLines(policy.flowLimits, policy.ipSets) : []),
                ...(sgPorts(state).length ? [`-j ${name('G')}`] : []),
                ...policy.forward.map((r) => literal(r, name('X'))),
              ],
              from: 'FORWARD',
            },
            {
              name: name('I'),
              rules: [...policy.overlay.map((r) => literal(r, '')), ...ipRows(policy.input)],
              from: 'INPUT',
            },
          ],
    ),
    named('iptables', 'nat', (name) => [
      ...(policy.dnat.length
        ? [{ name: name('D'), rules: policy.dnat.flatMap((r) => inPlace(r, policy.ipSets)), from: 'PREROUTING' }]
        : []),
      ...(policy.dnatLocal.length
        ? [{ name: name('O'), rules: policy.dnatLocal.map((r) => literal(r, '')), from: 'OUTPUT' }]
        : []),
      ...(policy.nat.length
        ? [{ name: name('N'), rules: policy.nat.map((r) => literal(r, '')), from: 'POSTROUTING' }]
        : []),
    ]),
    named('ebtables', 'nat', (name) => [
      ...(bridgeIn.length ? [{ name: name('S'), policy: 'RETURN', rules: bridgeIn, from: 'PREROUTING' }] : []),
      // a chain of its own: the cap's RETURN must not skip the ports' guard
      ...(rates.length ? [{ name: name('R'), policy: 'RETURN', rules: rates, from: 'PREROUTING' }] : []),
      ...(bridgeOut.length ? [{ name: name('P'), policy: 'RETURN', rules: bridgeOut, from: 'POSTROUTING' }] : []),
    ]),
    named('iptables', 'raw', (name) =>
      policy.zones.length
        ? [{ name: name('Z'), rules: policy.zones.map((r) => literal(r, '')), from: 'PREROUTING' }]
        : [],
    ),
    named('ip6tables', 'filter', (name) =>
      !policy.any
        ? []
        : [
            { name: name('X'), rules: setChainRules(v6Forward, policy.ipSets) },
            { name: name('F'), rules: v6Forward.map((r) => literal(r, name('X'))), from: 'FORWARD' },
            {
              name: name('I'),
              rules: [
                ...policy.overlay.filter((r) => familyNeutral(r.conds)).map((r) => literal(r, '')),
                ...expand(policy.input, policy.ipSets)
                  .filter((r) => familyNeutral(r.conds))
                  .map((r) => ipLine(r.conds, r.verdict)),
              ],
              from: 'INPUT',
            },
          ],
    ),
  ];
}
