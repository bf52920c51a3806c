// The iptables backend, for hosts without nft: the same policy as the nftables tables, in
// chains of virtwire's own (iptables filter and nat for NAT, forwarding, isolation and host
// access; ebtables nat for per-port anti-spoofing), reached by one jump from each built-in hook
// chain. A chain's name carries the hash of its table's rendered rules (VWF-<hash>), so a
// changed ruleset is new chains swapped in within one `*-restore --noflush` transaction, and
// the old ones removed; a chain whose rules were flushed is found by counting them.
// Nothing in the built-in chains is touched but virtwire's own jumps.
import type { HostNetwork, HostPort, HostSecurityRule, HostState } from '../../types/host.js';
import type { CommandRunner } from './command-runner.js';
import type { FirewallBackend, FirewallChange, FirewallCommand, FirewallPlan } from './firewall.js';
import { hashOf } from './firewall-nft.js';
import { cidr, ifname, ipv4, mac, port } from './firewall-values.js';
import { hostServicesOf, uplinksOf, type Uplink } from './firewall-policy.js';
import { policyId, sgPorts, type SgPolicy } from './firewall-sg.js';
import { namespacesOf, type TenantNamespace } from './namespace.js';

/** A chain of virtwire's own: its name is a role letter and its table's hash (a policy's: and its own). */
const OWN_CHAIN = /^VW[A-Z]-[0-9a-f]{12}(-[0-9a-f]{6})?$/;

interface Chain {
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
interface TableWant {
  tool: 'iptables' | 'ebtables';
  table: string;
  chains: Chain[];
}

function natChain(nets: HostNetwork[], spaces: TenantNamespace[]): string[] {
  // bridged frames of a namespaced tenant pass POSTROUTING too: no other tenant's masquerade takes them
  const shielded = spaces.map((s) => `-o ${ifname(s.net.network.bridge)} -j RETURN`);
  return [
    ...shielded,
    ...nets
      .filter((n) => n.network.nat)
      .flatMap(({ network: n }) => {
        const ns = spaces.find((s) => s.tenant === n.tenant);
        if (ns) {
          // the second NAT: from the namespace's transit address out of the host
          const out = n.uplink ? `-o ${ifname(n.uplink)}` : `! -o ${ifname(ns.transitVeth)}`;
          return [`-s ${ipv4(ns.nsAddress)}/32 ${out} -j MASQUERADE`];
        }
        const c = cidr(n.cidr);
        // like libvirt: multicast and broadcast stay local, the subnet itself is not translated
        const out = n.uplink ? `-o ${ifname(n.uplink)}` : `! -o ${ifname(n.bridge)}`;
        return [
          `-s ${c} -d 224.0.0.0/24 -j RETURN`,
          `-s ${c} -d 255.255.255.255/32 -j RETURN`,
          `-s ${c} ! -d ${c} ${out} -j MASQUERADE`,
        ];
      }),
  ];
}

function forwardChain(nets: HostNetwork[], spaces: TenantNamespace[], crossTenant: string): string[] {
  return nets.flatMap(({ network: n }) => {
    const b = ifname(n.bridge);
    // br_netfilter: frames bridged between two ports of one bridge pass FORWARD too
    const rules = [`-i ${b} -o ${b} -j ACCEPT`, `-i ${b} -j ${crossTenant}`];
    const ns = spaces.find((s) => s.tenant === n.tenant);
    if (ns) {
      // nothing is routed through a namespaced tenant's bridge on the host: only its transit
      const t = ifname(ns.transitVeth);
      const a = ipv4(ns.nsAddress);
      rules.push(`-i ${b} -j DROP`, `-o ${b} -j DROP`, `-i ${t} -j ${crossTenant}`);
      if (n.nat) {
        const out = n.uplink ? ` -o ${ifname(n.uplink)}` : '';
        rules.push(`-i ${t} -s ${a}/32${out} -j ACCEPT`);
        rules.push(`-o ${t} -d ${a}/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
      }
      rules.push(`-i ${t} -j DROP`, `-o ${t} -j DROP`);
      return rules;
    }
    if (n.nat) {
      const out = n.uplink ? ` -o ${ifname(n.uplink)}` : '';
      rules.push(`-i ${b} -s ${cidr(n.cidr)}${out} -j ACCEPT`);
      rules.push(`-o ${b} -d ${cidr(n.cidr)} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
    }
    rules.push(`-i ${b} -j DROP`, `-o ${b} -j DROP`);
    return rules;
  });
}

/** One rule per tenant bridge and transit (not one per pair): traffic into any tenant's is dropped. */
const crossTenantChain = (nets: HostNetwork[], spaces: TenantNamespace[]) =>
  [...nets.map((n) => n.network.bridge), ...spaces.map((s) => s.transitVeth)].map((d) => `-o ${ifname(d)} -j DROP`);

/**
 * Traffic a guest sends to the host itself (see firewall-nft.ts): replies, and the gateway's
 * services, go on (RETURN: the host's own INPUT rules still decide); everything else is dropped.
 */
function inputChain(nets: HostNetwork[], spaces: TenantNamespace[]): string[] {
  // a namespaced tenant's gateway is in its namespace: its bridge and transit reach nothing here
  // but replies
  const closed = spaces.flatMap((s) => {
    const t = ifname(s.transitVeth);
    return [
      `-i ${ifname(s.net.network.bridge)} -j DROP`,
      `-i ${t} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`,
      `-i ${t} -j DROP`,
    ];
  });
  return [
    ...closed,
    ...nets
      .filter((n) => !n.network.namespace)
      .flatMap((net) => {
        const b = ifname(net.network.bridge);
        const gw = ipv4(net.network.gateway);
        return [
          `-i ${b} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`,
          ...hostServicesOf(net).map(
            (s) =>
              `-i ${b} -d ${ipv4(s.address)}/32 -p ${s.protocol} -m ${s.protocol} --dport ${port(s.port)} -j RETURN`,
          ),
          `-i ${b} -d ${gw}/32 -p icmp -m icmp --icmp-type 8 -j RETURN`,
          `-i ${b} -j DROP`,
        ];
      }),
  ];
}

/**
 * Per port: its MAC only, its IP only (DHCP and ARP probes before it has one), IPv4 and ARP only;
 * never a DHCP server's reply, never ARP claiming its gateway's address.
 */
function spoofRules(p: HostPort, gateway: string): string[] {
  const i = `-i ${ifname(p.name)}`;
  const m = mac(p.mac);
  const rules = [
    `${i} -s ! ${m} -j DROP`,
    `${i} -p IPv4 --ip-proto udp --ip-sport 67 -j DROP`,
    `${i} -p ARP --arp-ip-src ${ipv4(gateway)} -j DROP`,
    `${i} -p ARP --arp-mac-src ! ${m} -j DROP`,
  ];
  if (p.ip)
    rules.push(`${i} -p ARP --arp-ip-src 0.0.0.0 -j RETURN`, `${i} -p ARP --arp-ip-src ! ${ipv4(p.ip)} -j DROP`);
  rules.push(`${i} -p ARP -j RETURN`);
  if (p.ip) {
    rules.push(
      `${i} -p IPv4 --ip-src 0.0.0.0 --ip-dst 255.255.255.255 --ip-proto udp --ip-sport 68 --ip-dport 67 -j RETURN`,
    );
    rules.push(`${i} -p IPv4 --ip-src ! ${ipv4(p.ip)} -j DROP`);
  }
  rules.push(`${i} -p IPv4 -j RETURN`, `${i} -j DROP`);
  return rules;
}

/** DHCP and the gateway's ARP stay on this host's side of a segment uplink (see firewall-nft.ts). */
function uplinkRules(u: Uplink, dir: '-i' | '-o'): string[] {
  const x = `${dir} ${ifname(u.name)}`;
  const g = ipv4(u.gateway);
  return [
    `${x} -p IPv4 --ip-proto udp --ip-dport 67:68 -j DROP`,
    `${x} -p ARP --arp-ip-dst ${g} -j DROP`,
    `${x} -p ARP --arp-ip-src ${g} -j DROP`,
  ];
}

// Security groups (firewall-sg.ts) without nft's sets and maps: one dispatch rule per member
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

function sgRules(rule: HostSecurityRule): string[] {
  const side = rule.direction === 'ingress' ? '-s' : '-d';
  const peers =
    'cidr' in rule.peer
      ? [`${side} ${cidr(rule.peer.cidr)} `]
      : 'group' in rule.peer
        ? rule.peer.addresses.map((a) => `${side} ${ipv4(a)}/32 `)
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

/** Member ports whose policy chain is another one now (see sgFlush in firewall-nft.ts). */
function sgFlushIptables(seen: TableSeen, want: TableWant): string[] {
  const policyOf = (rules: string[]) =>
    new Map(
      rules.flatMap((r) => {
        const m = /^-([ds]) (\S+)\/32 -([io]) \S+ -j VWC-[0-9a-f]{12}-([0-9a-f]{6})$/.exec(r);
        return m ? [[`${m[1]} ${m[2]}`, m[4]!] as const] : [];
      }),
    );
  const dispatch = (chains: [string, string[]][]) => chains.find(([name]) => name.startsWith('VWG-'))?.[1] ?? [];
  const before = policyOf(dispatch([...seen.chains]));
  const after = policyOf(dispatch(want.chains.map((c) => [c.name, c.rules])));
  return [...after].filter(([k, v]) => before.get(k) !== v).map(([k]) => k.split(' ')[1]!);
}

/** Names each chain after its role and the hash of everything its table holds. */
function named(tool: TableWant['tool'], table: string, build: (name: (role: string) => string) => Chain[]): TableWant {
  const draft = build((role) => `VW${role}-`);
  const hash = hashOf(JSON.stringify(draft)).slice(0, 12);
  return { tool, table, chains: build((role) => `VW${role}-${hash}`) };
}

export function desiredTables(state: HostState): TableWant[] {
  const nets = state.networks;
  const ports = nets.flatMap((n) => n.ports.map((p) => ({ port: p, gateway: n.network.gateway })));
  const spaces = namespacesOf(state);
  const nat = nets.some((n) => n.network.nat) || spaces.length > 0;
  const uplinks = uplinksOf(state);
  return [
    named('iptables', 'filter', (name) =>
      nets.length === 0
        ? []
        : [
            { name: name('X'), rules: crossTenantChain(nets, spaces) },
            ...sgChains(state, name),
            {
              name: name('F'),
              rules: [...(sgPorts(state).length ? [`-j ${name('G')}`] : []), ...forwardChain(nets, spaces, name('X'))],
              from: 'FORWARD',
            },
            { name: name('I'), rules: inputChain(nets, spaces), from: 'INPUT' },
          ],
    ),
    named('iptables', 'nat', (name) =>
      nat ? [{ name: name('N'), rules: natChain(nets, spaces), from: 'POSTROUTING' }] : [],
    ),
    named('ebtables', 'nat', (name) => [
      ...(ports.length || uplinks.length
        ? [
            {
              name: name('S'),
              policy: 'RETURN',
              rules: [
                ...ports.flatMap((x) => spoofRules(x.port, x.gateway)),
                ...uplinks.flatMap((u) => uplinkRules(u, '-i')),
              ],
              from: 'PREROUTING',
            },
          ]
        : []),
      ...(uplinks.length
        ? [
            {
              name: name('P'),
              policy: 'RETURN',
              rules: uplinks.flatMap((u) => uplinkRules(u, '-o')),
              from: 'POSTROUTING',
            },
          ]
        : []),
    ]),
    // a tenant's bridged frames tracked apart from any other's with the same addresses
    named('iptables', 'raw', (name) =>
      spaces.length
        ? [
            {
              name: name('Z'),
              rules: spaces.map((s) => `-i ${ifname(s.net.network.bridge)} -j CT --zone ${s.zone}`),
              from: 'PREROUTING',
            },
          ]
        : [],
    ),
  ];
}

/** virtwire's chains in one table as `*-save` prints it: rules per chain, jumps from built-ins. */
export interface TableSeen {
  chains: Map<string, string[]>;
  policies: Map<string, string>;
  /** position: 1-based, among all rules of the built-in chain */
  jumps: { from: string; to: string; position?: number }[];
}

export function parseSave(text: string): TableSeen {
  const seen: TableSeen = { chains: new Map(), policies: new Map(), jumps: [] };
  const position = new Map<string, number>();
  for (const line of text.split('\n')) {
    const decl = /^:(\S+) (\S+)/.exec(line);
    if (decl && OWN_CHAIN.test(decl[1]!)) {
      seen.chains.set(decl[1]!, seen.chains.get(decl[1]!) ?? []);
      seen.policies.set(decl[1]!, decl[2]!);
      continue;
    }
    const rule = /^-A (\S+) (.*)$/.exec(line);
    if (!rule) continue;
    const [, chain, body] = rule as unknown as [string, string, string];
    if (OWN_CHAIN.test(chain)) seen.chains.set(chain, [...(seen.chains.get(chain) ?? []), body]);
    else {
      position.set(chain, (position.get(chain) ?? 0) + 1);
      const jump = /^-j (\S+)$/.exec(body);
      if (jump && OWN_CHAIN.test(jump[1]!))
        seen.jumps.push({ from: chain, to: jump[1]!, position: position.get(chain)! });
    }
  }
  return seen;
}

/** The restore file that turns what is seen into what is wanted, or '' when they match. */
export function transition(want: TableWant, seen: TableSeen): string {
  const wanted = new Set(want.chains.map((c) => c.name));
  const intact = (c: Chain) => seen.chains.get(c.name)?.length === c.rules.length;
  const rebuild = want.chains.filter((c) => !intact(c));
  const stale = [...seen.chains.keys()].filter((c) => !wanted.has(c));
  // each wanted jump exactly once, from its own hook; every other jump to a chain of ours goes
  const count = new Map<string, number>();
  for (const j of seen.jumps) count.set(`${j.from} ${j.to}`, (count.get(`${j.from} ${j.to}`) ?? 0) + 1);
  const keep = new Set(want.chains.filter((c) => c.from).map((c) => `${c.from} ${c.name}`));
  const deletes = [...count].flatMap(([pair, n]) => Array.from({ length: keep.has(pair) ? n - 1 : n }, () => pair));
  // in the order of their positions, so each lands where it was counted
  const inserts = want.chains
    .filter((c) => c.from && !count.has(`${c.from} ${c.name}`))
    .sort((a, b) => (a.position ?? 1) - (b.position ?? 1));
  if (rebuild.length + stale.length + deletes.length + inserts.length === 0) return '';
  const lines = [`*${want.table}`];
  // declaring a chain under --noflush creates it or empties it; then it is filled
  for (const c of rebuild)
    lines.push(want.tool === 'ebtables' ? `:${c.name} ${c.policy ?? 'RETURN'}` : `:${c.name} - [0:0]`);
  for (const c of rebuild) for (const r of c.rules) lines.push(`-A ${c.name} ${r}`);
  for (const pair of deletes) lines.push(`-D ${pair.replace(' ', ' -j ')}`);
  for (const c of inserts) lines.push(`-I ${c.from} ${c.position ?? 1} -j ${c.name}`);
  // unreferenced now: emptied first (one stale chain may jump to another), then deleted
  for (const c of stale) lines.push(`-F ${c}`);
  for (const c of stale) lines.push(`-X ${c}`);
  lines.push('COMMIT');
  return lines.join('\n') + '\n';
}

const SAVE = { iptables: ['iptables-save', '-t'], ebtables: ['ebtables-save', '-t'] } as const;
const RESTORE = {
  iptables: ['iptables-restore', '-w', '--noflush'],
  ebtables: ['ebtables-restore', '--noflush'],
} as const;

/** What `seen` was, as a TableWant, so the rollback is the same transition the other way. */
function asWant(tool: TableWant['tool'], table: string, seen: TableSeen): TableWant {
  const jumps = new Map(seen.jumps.map((j) => [j.to, j]));
  return {
    tool,
    table,
    chains: [...seen.chains].map(([name, rules]) => {
      const jump = jumps.get(name);
      return {
        name,
        rules,
        policy: seen.policies.get(name),
        ...(jump ? { from: jump.from, position: jump.position } : {}),
      };
    }),
  };
}

export const iptablesBackend: FirewallBackend = {
  kind: 'iptables',
  features: ['iptables', 'ebtables'],
  async plan(runner: CommandRunner, state: HostState): Promise<FirewallPlan> {
    const commands: FirewallCommand[] = [];
    const restore: FirewallCommand[] = [];
    const changes: FirewallChange[] = [];
    const flush: string[] = [];
    for (const want of desiredTables(state)) {
      const saved = await runner.run([...SAVE[want.tool], want.table], { step: 'firewall: observe' });
      const seen = parseSave(saved.stdout);
      if (want.tool === 'iptables' && want.table === 'filter') flush.push(...sgFlushIptables(seen, want));
      const forward = transition(want, seen);
      if (!forward) continue;
      commands.push({ argv: [...RESTORE[want.tool]], input: forward });
      changes.push({
        kind: 'firewall',
        table: `${want.tool} ${want.table}`,
        action: want.chains.length ? 'replace' : 'remove',
      });
      // rollback: from what this apply makes back to what was seen
      const after: TableSeen = {
        chains: new Map(want.chains.map((c) => [c.name, c.rules])),
        policies: new Map(),
        jumps: want.chains.filter((c) => c.from).map((c) => ({ from: c.from!, to: c.name })),
      };
      const back = transition(asWant(want.tool, want.table, seen), after);
      if (back) restore.unshift({ argv: [...RESTORE[want.tool]], input: back });
    }
    return { commands, changes, restore, flush: [...new Set(flush)].sort() };
  },
};
