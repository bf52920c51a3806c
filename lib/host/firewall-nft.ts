// The nftables backend: two tables of virtwire's own, `inet virtwire` (NAT, forwarding policy,
// isolation, host access) and `bridge virtwire` (per-port anti-spoofing), each replaced as a
// whole in one atomic `nft -f -` transaction. The rendered table's hash is stored with it, and
// the live table is compared by hash, rule count and set elements: a flushed chain or an
// element deleted from a set is drift, and the next apply puts it back.
import { createHash } from 'node:crypto';
import type { HostState, HostNetwork, HostSecurityRule } from '../../types/host.js';
import type { CommandRunner } from './command-runner.js';
import type { FirewallBackend, FirewallChange, FirewallCommand, FirewallPlan } from './firewall.js';
import { cidr, ifname, ipv4, mac, port } from './firewall-values.js';
import { hostServicesOf, uplinksOf, type Uplink } from './firewall-policy.js';
import { groupId, peerGroups, policyId, sgPorts, type SgPolicy } from './firewall-sg.js';
import { namespacesOf, type TenantNamespace } from './namespace.js';

const TABLE = 'virtwire';

const q = (name: string) => `"${ifname(name)}"`;

function natRules(net: HostNetwork, ns: TenantNamespace | undefined): string[] {
  const n = net.network;
  const b = q(n.bridge);
  const c = cidr(n.cidr);
  const rules: string[] = [];
  // a namespaced tenant arrives NAT'd to its transit address: the second NAT, out of the host
  if (ns && n.nat) {
    const out = n.uplink ? `oifname ${q(n.uplink)}` : `oifname != ${q(ns.transitVeth)}`;
    rules.push(`ip saddr ${ipv4(ns.nsAddress)} ${out} masquerade`);
  } else if (n.nat) {
    // like libvirt: multicast and broadcast stay local, the subnet itself is not translated
    const out = n.uplink ? ` oifname ${q(n.uplink)}` : ` oifname != ${b}`;
    rules.push(`ip saddr ${c} ip daddr 224.0.0.0/24 return`);
    rules.push(`ip saddr ${c} ip daddr 255.255.255.255 return`);
    rules.push(`ip saddr ${c} ip daddr != ${c}${out} masquerade`);
  }
  return rules;
}

function forwardRules(net: HostNetwork, ns: TenantNamespace | undefined): string[] {
  const n = net.network;
  const b = q(n.bridge);
  const rules = [
    // where br_netfilter is on (bridge-nf-call-iptables), frames bridged between two ports of
    // one bridge pass this hook too: the tenant's own L2 traffic is not ours to route or drop
    `iifname ${b} oifname ${b} accept`,
    `iifname ${b} oifname @tenant_bridges drop`,
  ];
  if (ns) {
    // nothing is routed through a namespaced tenant's bridge on the host: only its transit
    const t = q(ns.transitVeth);
    const a = ipv4(ns.nsAddress);
    rules.push(`iifname ${b} drop`, `oifname ${b} drop`, `iifname ${t} oifname @tenant_bridges drop`);
    if (n.nat) {
      const out = n.uplink ? ` oifname ${q(n.uplink)}` : '';
      rules.push(
        `iifname ${t} ip saddr ${a}${out} accept`,
        `oifname ${t} ip daddr ${a} ct state established,related accept`,
      );
    }
    rules.push(`iifname ${t} drop`, `oifname ${t} drop`);
    return rules;
  }
  if (n.nat) {
    const out = n.uplink ? ` oifname ${q(n.uplink)}` : '';
    rules.push(`iifname ${b} ip saddr ${cidr(n.cidr)}${out} accept`);
    rules.push(`oifname ${b} ip daddr ${cidr(n.cidr)} ct state established,related accept`);
  }
  // not NAT, or not from/to the subnet: never routed (libvirt rejects these too)
  rules.push(`iifname ${b} drop`, `oifname ${b} drop`);
  return rules;
}

// What a guest may send to the host itself: replies to what the host started, and on its own
// tenant's gateway address only DHCP, DNS, ping and the network's hostServices. Everything else
// addressed to any of the host's addresses (another tenant's gateway, the uplink's, IPv6) is
// dropped. Constant rules over sets keyed by bridge: they do not grow with the tenants.
const INPUT_RULES = [
  'iifname @tenant_bridges ct state established,related accept',
  'iifname . ip daddr . meta l4proto . th dport @host_services accept',
  'iifname . ip daddr @bridge_gws icmp type echo-request accept',
  'iifname @tenant_bridges drop',
];

function inputSets(all: HostNetwork[]): Sets {
  // a namespaced tenant's gateway and its services are in its namespace, not on the host
  const nets = all.filter((n) => !n.network.namespace);
  return {
    bridge_gws: nets.map((n) => `${ifname(n.network.bridge)} . ${ipv4(n.network.gateway)}`),
    host_services: nets.flatMap((n) =>
      hostServicesOf(n).map(
        (s) => `${ifname(n.network.bridge)} . ${ipv4(s.address)} . ${s.protocol} . ${port(s.port)}`,
      ),
    ),
  };
}

// Anti-spoofing as a constant handful of rules over sets keyed by port: the rule count does not
// grow with the ports (a thousand ports are a thousand set elements, not six thousand rules),
// which keeps observing the table cheap.
const SPOOF_RULES = [
  'iifname @ports iifname . ether saddr != @port_macs drop',
  // no guest answers DHCP for its neighbours, or claims its gateway's address in ARP
  'iifname @ports udp sport 67 drop',
  'iifname . arp saddr ip @port_gws drop',
  'iifname @ports ether type != { ip, arp } drop',
  'iifname @ports iifname . arp saddr ether != @port_macs drop',
  // an address-less ARP probe (0.0.0.0) and DHCP are allowed before the guest has its address
  'iifname @ip_ports arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @port_ips drop',
  'iifname @ip_ports ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept',
  'iifname @ip_ports iifname . ip saddr != @port_ips drop',
];

// A tenant's bridges on several hosts are one L2 segment (its VLAN or VXLAN), yet each host has
// the gateway address and a dnsmasq of its own for its own guests (as Neutron's distributed
// routers keep theirs): DHCP and ARP for the gateway address never cross a segment uplink, so a
// guest is answered only by its own host.
const UPLINK_IN = [
  'iifname @uplinks udp dport { 67, 68 } drop',
  'iifname . arp daddr ip @uplink_gws drop',
  'iifname . arp saddr ip @uplink_gws drop',
];
const UPLINK_OUT = [
  'oifname @uplinks udp dport { 67, 68 } drop',
  'oifname . arp daddr ip @uplink_gws drop',
  'oifname . arp saddr ip @uplink_gws drop',
];

const uplinkSets = (uplinks: Uplink[]): Sets => ({
  uplinks: uplinks.map((u) => ifname(u.name)),
  uplink_gws: uplinks.map((u) => `${ifname(u.name)} . ${ipv4(u.gateway)}`),
});

/** A set's elements as nft prints them in JSON: names, or concatenations joined by " . ". */
type Sets = Record<string, string[]>;

function spoofSets(nets: HostNetwork[]): Sets {
  const ports = nets.flatMap((n) => n.ports);
  const withIp = ports.filter((p) => p.ip);
  return {
    ports: ports.map((p) => ifname(p.name)),
    ip_ports: withIp.map((p) => ifname(p.name)),
    port_macs: ports.map((p) => `${ifname(p.name)} . ${mac(p.mac)}`),
    port_ips: withIp.map((p) => `${ifname(p.name)} . ${ipv4(p.ip!)}`),
    port_gws: nets.flatMap((n) => n.ports.map((p) => `${ifname(p.name)} . ${ipv4(n.network.gateway)}`)),
  };
}

// Security groups (firewall-sg.ts): the two lookups every forwarded packet of a member port
// meets, before the tenant's own rules — the receiver's ingress policy, then the sender's egress.
const SG_FORWARD = ['oifname . ip daddr vmap @sg_in', 'iifname . ip saddr vmap @sg_out'];

const range = ([lo, hi]: [number, number]) => (lo === hi ? `${port(lo)}` : `${port(lo)}-${port(hi)}`);

/** One rule of a policy: what it matches, then `return` (allowed: on to the next check). */
function sgRule(rule: HostSecurityRule, tenant: string): string {
  const side = rule.direction === 'ingress' ? 'saddr' : 'daddr';
  const parts: string[] = [];
  if ('cidr' in rule.peer) parts.push(`ip ${side} ${cidr(rule.peer.cidr)}`);
  else if ('group' in rule.peer) parts.push(`ip ${side} @sgm_${groupId(tenant, rule.peer.group)}`);
  if (rule.protocol === 'tcp' || rule.protocol === 'udp')
    parts.push(
      rule.ports ? `${rule.protocol} dport { ${rule.ports.map(range).join(', ')} }` : `meta l4proto ${rule.protocol}`,
    );
  else if (rule.protocol === 'icmp') parts.push('meta l4proto icmp');
  return [...parts, 'return'].join(' ');
}

const policyChain = (policy: SgPolicy) =>
  `sgc_${policyId(policy, (r) => sgRule(r, policy.tenant))}_${policy.direction === 'ingress' ? 'i' : 'o'}`;

/** The security groups' part of `inet virtwire`: member sets, one chain per policy, the two maps. */
function sgRuleset(state: HostState): { sets: Sets; maps: Sets; chains: string[]; rules: number } {
  const ports = sgPorts(state);
  if (ports.length === 0) return { sets: {}, maps: {}, chains: [], rules: 0 };
  const sets: Sets = Object.fromEntries(
    peerGroups(state).map((g) => [`sgm_${groupId(g.tenant, g.group)}`, g.addresses.map(ipv4)]),
  );
  const policies = new Map<string, SgPolicy>();
  const entry = (bridge: string, ip: string, policy: SgPolicy) => {
    const name = policyChain(policy);
    policies.set(name, policy);
    return `${ifname(bridge)} . ${ipv4(ip)} : jump ${name}`;
  };
  const maps: Sets = {
    sg_in: ports.map((p) => entry(p.bridge, p.ip, p.ingress)),
    sg_out: ports.filter((p) => p.egress).map((p) => entry(p.bridge, p.ip, p.egress!)),
  };
  const chains = [...policies].flatMap(([name, policy]) => {
    const rules = [
      'ct state established,related return',
      ...policy.rules.map((r) => sgRule(r.rule, policy.tenant)),
      'drop',
    ];
    return [`  chain ${name} {`, ...rules.map((r) => `    ${r}`), '  }'];
  });
  const rules = [...policies.values()].reduce((n, p) => n + p.rules.length + 2, 0);
  return { sets, maps, chains, rules };
}

const SET_TYPES: Record<string, string> = {
  tenant_bridges: 'ifname',
  ports: 'ifname',
  ip_ports: 'ifname',
  port_macs: 'ifname . ether_addr',
  port_ips: 'ifname . ipv4_addr',
  port_gws: 'ifname . ipv4_addr',
  bridge_gws: 'ifname . ipv4_addr',
  host_services: 'ifname . ipv4_addr . inet_proto . inet_service',
  uplinks: 'ifname',
  uplink_gws: 'ifname . ipv4_addr',
  sg_in: 'ifname . ipv4_addr : verdict',
  sg_out: 'ifname . ipv4_addr : verdict',
};

/** A set's (or map's) type: fixed names above; a group's member set holds addresses. */
const typeOf = (name: string) => SET_TYPES[name] ?? (name.startsWith('sgm_') ? 'ipv4_addr' : '');

function renderSets(sets: Sets): string[] {
  return Object.entries(sets).flatMap(([name, elements]) => {
    const type = typeOf(name);
    // interface names are strings in nft syntax; the other parts of a concatenation are not
    const quoted = elements.map((e) =>
      e
        .split(' . ')
        .map((part, i) => (i === 0 && type.startsWith('ifname') ? `"${part}"` : part))
        .join(' . '),
    );
    return [
      `  ${type.includes(' : ') ? 'map' : 'set'} ${name} {`,
      `    type ${type}`,
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

type Family = 'inet' | 'bridge';

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
  const nets = state.networks;
  const sg = sgRuleset(state);
  const spaces = namespacesOf(state);
  const nsOf = (net: HostNetwork) => spaces.find((s) => s.tenant === net.network.tenant);
  // a namespaced tenant's transit is a tenant device like its bridge: no tenant reaches another's
  const devices = [...nets.map((n) => n.network.bridge), ...spaces.map((s) => s.transitVeth)];
  const plainSets: Sets =
    nets.length === 0 ? {} : { tenant_bridges: devices.map(ifname), ...inputSets(nets), ...sg.sets };
  const inetSets: Sets = { ...plainSets, ...sg.maps };
  const forward = [...(sg.chains.length ? SG_FORWARD : []), ...nets.flatMap((n) => forwardRules(n, nsOf(n)))];
  // frames bridged on a namespaced tenant's bridge pass the NAT hook too (br_netfilter): no other
  // tenant's masquerade may take them, whatever their addresses
  const shielded = spaces.map((s) => `oifname ${q(s.net.network.bridge)} return`);
  const zones = spaces.map((s) => `iifname ${q(s.net.network.bridge)} ct zone set ${s.zone}`);
  const inetRules = [
    [...shielded, ...nets.flatMap((n) => natRules(n, nsOf(n)))],
    forward,
    nets.length === 0 ? [] : INPUT_RULES,
    zones,
  ];
  const inet =
    nets.length === 0
      ? []
      : [
          // chains before the maps that jump to them
          ...renderSets(plainSets),
          ...sg.chains,
          ...renderSets(sg.maps),
          ...chain('postrouting', 'type nat hook postrouting priority srcnat', inetRules[0]!),
          ...chain('forward', 'type filter hook forward priority filter', inetRules[1]!),
          ...chain('input', 'type filter hook input priority filter', inetRules[2]!),
          // a tenant's bridged frames tracked apart from any other's with the same addresses
          ...(zones.length ? chain('zones', 'type filter hook prerouting priority raw', zones) : []),
        ];
  const ports = nets.flatMap((n) => n.ports);
  const uplinks = uplinksOf(state);
  const bridgeSets: Sets = {
    ...(ports.length ? spoofSets(nets) : {}),
    ...(uplinks.length ? uplinkSets(uplinks) : {}),
  };
  const pre = [...(ports.length ? SPOOF_RULES : []), ...(uplinks.length ? UPLINK_IN : [])];
  const post = uplinks.length ? UPLINK_OUT : [];
  const bridge =
    pre.length === 0
      ? []
      : [
          ...renderSets(bridgeSets),
          ...chain('prerouting', 'type filter hook prerouting priority -200', pre),
          ...(post.length ? chain('postrouting', 'type filter hook postrouting priority 200', post) : []),
        ];
  return {
    inet: inet.join('\n'),
    bridge: bridge.join('\n'),
    rules: { inet: inetRules.flat().length + sg.rules, bridge: pre.length + post.length },
    sets: { inet: inetSets, bridge: bridgeSets },
  };
}

export const hashOf = (body: string) => createHash('sha256').update(body).digest('hex').slice(0, 16);

/** The nft script that atomically replaces (or, with an empty body, removes) one table. */
export function tableScript(family: Family, body: string): string {
  // "table X" first makes the delete valid when the table does not exist yet
  const lines = [`table ${family} ${TABLE}`, `delete table ${family} ${TABLE}`];
  // the hash lives in a tiny set's comment: reading it is cheap, comparing a rendered ruleset
  // with nft's own printing of it is not (nft rewrites what it is given)
  if (body)
    lines.push(
      `table ${family} ${TABLE} {`,
      `  set ${HASH_SET} {`,
      '    type ifname',
      `    comment "virtwire:${hashOf(body)}"`,
      '  }',
      body,
      '}',
    );
  return lines.join('\n') + '\n';
}

const HASH_SET = 'applied';

type NftElem = string | { concat: string[] };
interface NftItem {
  set?: { name: string; comment?: string; elem?: NftElem[] };
  map?: { name: string; elem?: [NftElem, Record<string, { target: string }>][] };
  rule?: unknown;
}

const elemText = (e: NftElem) => (typeof e === 'string' ? e : e.concat.join(' . '));

/** The live table as nft's JSON shows it (null when the table does not exist). */
export function parseTable(json: string): TableView {
  const items = (JSON.parse(json) as { nftables: NftItem[] }).nftables;
  const sets: Sets = {};
  let hash = '';
  for (const { set, map } of items) {
    // a verdict map's element as renderRuleset writes it: `key : jump chain`
    if (map)
      sets[map.name] = (map.elem ?? []).map(([k, v]) => {
        const [verdict, arg] = Object.entries(v)[0] ?? ['', { target: '' }];
        return `${elemText(k)} : ${verdict} ${arg.target}`;
      });
    if (!set) continue;
    if (set.name === HASH_SET) hash = /^virtwire:([0-9a-f]+)$/.exec(set.comment ?? '')?.[1] ?? '';
    else sets[set.name] = (set.elem ?? []).map(elemText);
  }
  return { hash, rules: items.filter((x) => 'rule' in x).length, sets };
}

const sameSets = (a: Sets, b: Sets) => {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => {
    const x = [...a[k]!].sort();
    const y = [...(b[k] ?? [])].sort();
    return x.length === y.length && x.every((v, i) => v === y[i]);
  });
};

async function liveTable(
  runner: CommandRunner,
  family: Family,
): Promise<{ view: TableView; text: () => Promise<string> } | null> {
  const r = await runner.run(['nft', '-j', 'list', 'table', family, TABLE], {
    allowFailure: true,
    step: 'firewall: observe',
  });
  if (r.exitCode !== 0) return null;
  const text = async () =>
    (await runner.run(['nft', 'list', 'table', family, TABLE], { step: 'firewall: observe' })).stdout;
  return { view: parseTable(r.stdout), text };
}

const NFT = ['nft', '-f', '-'];

export const nftablesBackend: FirewallBackend = {
  kind: 'nftables',
  features: ['nftables', 'nftBridge'],
  async plan(runner: CommandRunner, state: HostState): Promise<FirewallPlan> {
    const want = renderRuleset(state);
    const commands: FirewallCommand[] = [];
    const restore: FirewallCommand[] = [];
    const changes: FirewallChange[] = [];
    let flush: string[] = [];
    for (const family of ['inet', 'bridge'] as const) {
      const body = want[family];
      const live = await liveTable(runner, family);
      if (family === 'inet') flush = sgFlush(live?.view.sets ?? {}, want.sets.inet);
      const same = body
        ? live !== null &&
          live.view.hash === hashOf(body) &&
          live.view.rules === want.rules[family] &&
          sameSets(want.sets[family], live.view.sets)
        : live === null;
      if (same) continue;
      commands.push({ argv: NFT, input: tableScript(family, body) });
      changes.push({ kind: 'firewall', table: `${family} ${TABLE}`, action: body ? 'replace' : 'remove' });
      const current = live === null ? '' : await live.text();
      restore.push({ argv: NFT, input: `table ${family} ${TABLE}\ndelete table ${family} ${TABLE}\n${current}\n` });
    }
    return { commands, changes, restore, flush };
  },
};

/**
 * Member ports whose policy is another chain now (or that just joined a group), and addresses
 * that left a peer group: what conntrack must forget for the new rules to hold for open flows.
 */
export function sgFlush(live: Sets, want: Sets): string[] {
  const out = new Set<string>();
  const split = (e: string) => e.split(' : ') as [string, string];
  for (const name of ['sg_in', 'sg_out']) {
    const before = new Map((live[name] ?? []).map(split));
    for (const [key, verdict] of (want[name] ?? []).map(split))
      if (before.get(key) !== verdict) out.add(key.split(' . ')[1]!);
  }
  for (const [name, addresses] of Object.entries(live)) {
    // a set no rule names any more: the policies that named it changed, their ports are above
    if (!name.startsWith('sgm_') || !(name in want)) continue;
    const kept = new Set(want[name] ?? []);
    for (const a of addresses) if (!kept.has(a)) out.add(a);
  }
  return [...out].sort();
}
