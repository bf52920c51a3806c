// virtwire's tenant firewall policy, written once for both backends: from a host state, every rule
// of NAT, forwarding, isolation, host access, anti-spoofing and the segment uplinks' guards, in
// the neutral terms of rules.ts. nft.ts and iptables.ts render it; security groups (sg.ts) are
// the one part with a model of their own, rendered by each backend beside this.
import type { HostNetwork, HostState } from '../../../types/host.js';
import { VXLAN_PORT, uplinkOf } from '../links.js';
import { namespacesOf, type TenantNamespace } from '../namespace.js';
import { ipv6Sources, packetRateOf, solicitedNodeOf } from '../../spec/index.js';
import type { Block, Cond, InSet, KeyedRule, Rule, RowSet, Verdict } from './rules.js';

/** The whole policy of one host (or one tenant namespace). */
export interface TenantPolicy {
  /** whether the host has tenant networks at all (none: no tables) */
  any: boolean;
  /** NAT: exemptions, then each tenant's masquerade */
  nat: Rule[];
  /** routing between devices: a tenant's own traffic, its NAT, nothing across tenants */
  forward: Rule[];
  /** what guests may send to the host itself */
  input: Block;
  /** encapsulated traffic the host's VXLAN devices accept: from its segments' peers only */
  overlay: Rule[];
  /** what each guest address may hold in the host's connection tracking (none: no tenants) */
  flowLimits?: FlowLimits;
  /** some network has IPv6: the IPv6 rules and sets are there (none otherwise: IPv6 is dropped whole) */
  ipv6: boolean;
  /** the ports' packet-rate caps, one per distinct rate (ascending) */
  packetRates: PacketRate[];
  /** conntrack zones of namespaced tenants' bridged frames */
  zones: Rule[];
  /** destination NAT of what arrives (forwards, floating IPs): the tenant's own first, then no other tenant's */
  dnat: Rule[];
  /** destination NAT of what the host itself sends (the same ways in) */
  dnatLocal: Rule[];
  /** on the bridges, frames arriving: the ports' anti-spoofing, then the uplinks' guards */
  bridgeIn: Block[];
  /** on the bridges, frames leaving: the uplinks' guards */
  bridgeOut: Block[];
  /** the IP-level sets (tenant devices, gateways, services) */
  ipSets: Record<string, RowSet>;
  /** the bridge-level sets (ports, their addresses, uplinks) */
  bridgeSets: Record<string, RowSet>;
  /** the namespaced tenants (for backends that name their chains after them) */
  namespaces: TenantNamespace[];
}

interface Uplink {
  /** the uplink device, e.g. eth1.100 or vwxacme-… */
  name: string;
  gateway: string;
  gateway6?: string;
}

function uplinksOf(state: HostState): Uplink[] {
  return state.networks.flatMap((net) => {
    const u = uplinkOf(net);
    const gw6 = net.network.ipv6?.gateway;
    return u ? [{ name: u.name, gateway: net.network.gateway, ...(gw6 ? { gateway6: gw6 } : {}) }] : [];
  });
}

/** The gateway's services a guest may use: DHCP (also broadcast), DNS, and the network's hostServices. */
function hostServicesOf(net: HostNetwork): { address: string; protocol: 'tcp' | 'udp'; port: number }[] {
  const gw = net.network.gateway;
  const dhcp =
    net.dhcp === false
      ? []
      : [
          { address: gw, protocol: 'udp' as const, port: 67 },
          { address: '255.255.255.255', protocol: 'udp' as const, port: 67 },
          { address: gw, protocol: 'udp' as const, port: 53 },
          { address: gw, protocol: 'tcp' as const, port: 53 },
        ];
  return [...dhcp, ...(net.network.hostServices ?? []).map((s) => ({ address: gw, ...s }))];
}

/**
 * The same for IPv6, on the network's gateway6: DNS and the hostServices, and DHCPv6 (its clients
 * send to the All_DHCP_Relay_Agents_and_Servers group from their link-local address).
 */
function hostServices6Of(net: HostNetwork): { address: string; protocol: 'tcp' | 'udp'; port: number }[] {
  const gw = net.network.ipv6?.gateway;
  if (!gw) return [];
  const dhcp =
    net.dhcp === false
      ? []
      : [
          { address: DHCP6_SERVERS, protocol: 'udp' as const, port: 547 },
          { address: gw, protocol: 'udp' as const, port: 53 },
          { address: gw, protocol: 'tcp' as const, port: 53 },
        ];
  return [...dhcp, ...(net.network.hostServices ?? []).map((s) => ({ address: gw, ...s }))];
}
const DHCP6_SERVERS = 'ff02::1:2';

const is = (field: Cond['field'], value: Cond['value']): Cond => ({ field, value });
const not = (field: Cond['field'], value: Cond['value']): Cond => ({ field, value, not: true });
const rule = (verdict: Verdict, ...conds: (Cond | InSet)[]): Rule => ({ conds, verdict });
const ESTABLISHED = is('ct', 'established');
const DNATED = is('ctStatus', 'dnat');
/** every tenant device (bridges, namespaced tenants' transits) */
export const TENANT_DEVICES = 'tenant_bridges';
const toTenant: InSet = { field: 'oif', set: TENANT_DEVICES };

/** A way in from outside the tenant: what it matches on the host, and where it goes. */
interface WayIn {
  match: Cond[];
  to: { dnat: string; port?: number };
}

// What "the host" is to a forward without an address, in a state no HostPlane planned (a plane
// gives each its uplink's addresses first): any of its addresses but the loopback's (traffic to
// 127.0.0.0/8 cannot be sent on to a guest without route_localnet).
const HOST_ADDRESS = [is('daddrType', 'local'), not('daddr', '127.0.0.0/8')];

/** A tenant network of the state, with its namespace (if any) and its ways in, each derived once. */
interface Tenant {
  net: HostNetwork;
  ns: TenantNamespace | undefined;
  ways: WayIn[];
}

/** The forwards of a tenant's ports (or, inside its namespace, the ones it serves) and their floating IPs. */
function waysIn(net: HostNetwork, ns: TenantNamespace | undefined): WayIn[] {
  const forwards = [
    ...net.ports.flatMap((p) => (p.forwards ?? []).map((f) => ({ f, ip: p.ip! }))),
    ...(net.forwardsIn ?? []).map((f) => ({ f, ip: f.ip })),
  ];
  const byForward = forwards.map(({ f, ip }) => ({
    match: [
      ...(f.address ? [is('daddr', f.address)] : HOST_ADDRESS),
      is('l4proto', f.protocol),
      is('dport', f.hostPort),
    ],
    // a namespaced tenant's guests are reached through its namespace: the same port on its address there
    to: ns ? { dnat: ns.nsAddress, port: f.hostPort } : { dnat: ip, port: f.port },
  }));
  // a namespaced tenant's floating IPs are routed to its namespace untranslated: translated there
  const byFloating = ns ? [] : floatingOf(net).map((f) => ({ match: [is('daddr', f.floatingIp)], to: { dnat: f.ip } }));
  return [...byForward, ...byFloating];
}

/** A network's floating IPs and their guests: its ports' (or, inside a namespace, the ones it serves). */
const floatingOf = (net: HostNetwork): { floatingIp: string; ip: string }[] => [
  ...net.ports.flatMap((p) => (p.floatingIp ? [{ floatingIp: p.floatingIp, ip: p.ip! }] : [])),
  ...(net.floatingIn ?? []),
];

function natRules({ net, ns, ways }: Tenant): Rule[] {
  const n = net.network;
  if (!n.nat) return [];
  const hairpin = ways.length
    ? // a guest that reaches a way in to its own tenant (hairpin): answered through the host
      [rule('masquerade', is('oif', ns?.transitVeth ?? n.bridge), is('saddr', ns?.nsAddress ?? n.cidr), DNATED)]
    : [];
  // a floating IP's guest leaves from it
  const floating = floatingOf(net).map((f) =>
    rule(
      { snat: f.floatingIp },
      is('saddr', f.ip),
      not('daddr', n.cidr),
      n.uplink ? is('oif', n.uplink) : not('oif', n.bridge),
    ),
  );
  // a namespaced tenant arrives NAT'd to its transit address: the second NAT, out of the host
  if (ns)
    return [
      ...hairpin,
      rule('masquerade', is('saddr', ns.nsAddress), n.uplink ? is('oif', n.uplink) : not('oif', ns.transitVeth)),
      ...(ns.nsAddress6
        ? [rule('masquerade', is('saddr6', ns.nsAddress6), n.uplink ? is('oif', n.uplink) : not('oif', ns.transitVeth))]
        : []),
    ];
  // like libvirt: multicast and broadcast stay local, the subnet itself is not translated
  const v6 = n.ipv6?.outbound === 'nat' ? n.ipv6.cidr : undefined;
  const nat66 = v6
    ? [
        rule('return', is('saddr6', v6), is('daddr6', 'ff00::/8')),
        rule('masquerade', is('saddr6', v6), not('daddr6', v6), n.uplink ? is('oif', n.uplink) : not('oif', n.bridge)),
      ]
    : [];
  return [
    ...nat66,
    ...hairpin,
    rule('return', is('saddr', n.cidr), is('daddr', '224.0.0.0/24')),
    rule('return', is('saddr', n.cidr), is('daddr', '255.255.255.255')),
    ...floating,
    rule(
      'masquerade',
      is('saddr', n.cidr),
      not('daddr', n.cidr),
      n.uplink ? is('oif', n.uplink) : not('oif', n.bridge),
    ),
  ];
}

/**
 * The host's connection tracking is one table for every tenant: a guest that floods it with new
 * flows (a SYN flood, a UDP port scan) would leave no room for anyone's NAT. Each source address
 * routed from a tenant device (a guest's; a namespaced tenant's transit address for the whole
 * tenant) may start `newPerSecond` flows a second (`burst` at once) and hold `flows` at a time;
 * what is over is dropped before it is tracked for long.
 */
export interface FlowLimits {
  flows: number;
  newPerSecond: number;
  burst: number;
}
export const FLOW_LIMITS: FlowLimits = { flows: 16384, newPerSecond: 1000, burst: 2000 };

/**
 * What a guest may send, in packets a second (QosSpec.packetsPerSecond, else PACKET_RATE's
 * default), with a tenth of a second's worth at once: one guest's flood of tiny frames costs
 * the host's CPU per packet, however few bytes it is. Checked first on each port; over it, dropped.
 */
export interface PacketRate {
  rate: number;
  burst: number;
  /** the bridge set of the ports capped at this rate */
  set: string;
}

function packetRates(nets: HostNetwork[]): (PacketRate & { ports: string[] })[] {
  const byRate = new Map<number, string[]>();
  for (const port of nets.flatMap((n) => n.ports)) {
    const rate = packetRateOf(port.qos);
    byRate.set(rate, [...(byRate.get(rate) ?? []), port.name]);
  }
  return [...byRate]
    .sort(([a], [b]) => a - b)
    .map(([rate, ports]) => ({ rate, burst: Math.ceil(rate / 10), set: `pps_${rate}`, ports: ports.sort() }));
}

/** The UDP ports of overlays (VXLAN: IANA's and Linux's old default; Geneve): never a guest's to send to. */
const OVERLAY_PORTS = [4789, 8472, 6081];

/**
 * What a guest may never reach through the host, whatever the NAT allows: link-local addresses
 * (169.254.0.0/16: cloud metadata services), any overlay's UDP port (a crafted VXLAN packet with
 * another tenant's VNI), and the underlay addresses of the host's segments (its peers, its own).
 */
const outOfBounds = (dev: string, underlay: string[]): Rule[] => [
  rule('drop', is('iif', dev), is('daddr', '169.254.0.0/16')),
  rule('drop', is('iif', dev), is('udpDport', OVERLAY_PORTS)),
  ...underlay.map((a) => rule('drop', is('iif', dev), is('daddr', a))),
];

function forwardRules({ net, ns, ways }: Tenant, underlay: string[]): Rule[] {
  const n = net.network;
  const b = n.bridge;
  const out = n.uplink ? [is('oif', n.uplink)] : [];
  const translated = n.nat && ways.length > 0;
  const rules = [
    // where br_netfilter is on (bridge-nf-call-iptables), frames bridged between two ports of
    // one bridge pass this hook too: the tenant's own L2 traffic is not ours to route or drop
    rule('accept', is('iif', b), is('oif', b)),
    // what a way in (a forward, a floating IP) translated to the tenant: only ways in from outside
    // the tenant devices or from the tenant itself are ever translated (dnatRules)
    ...(translated && !ns ? [rule('accept', is('oif', b), is('daddr', n.cidr), DNATED)] : []),
    rule('drop', is('iif', b), toTenant),
    ...outOfBounds(b, underlay),
  ];
  if (ns) {
    // nothing is routed through a namespaced tenant's bridge on the host: only its transit
    const t = ns.transitVeth;
    rules.push(
      rule('drop', is('iif', b)),
      rule('drop', is('oif', b)),
      // (a guest with a floating IP reaching its own tenant's forward comes back from that IP, untranslated)
      ...(translated
        ? [ns.nsAddress, ...floatingOf(net).map((f) => f.floatingIp)].map((a) =>
            rule('accept', is('oif', t), is('daddr', a), DNATED),
          )
        : []),
      rule('drop', is('iif', t), toTenant),
      ...outOfBounds(t, underlay),
    );
    if (n.nat)
      rules.push(
        rule('accept', is('iif', t), is('saddr', ns.nsAddress), ...out),
        // its floating IPs' guests: translated in the namespace, routed by the host as they are
        ...floatingOf(net).map((f) => rule('accept', is('iif', t), is('saddr', f.floatingIp), ...out)),
        rule('accept', is('oif', t), is('daddr', ns.nsAddress), ESTABLISHED),
      );
    // its IPv6, NAT66'd in the namespace to its transit address: out, and replies in
    if (ns.nsAddress6)
      rules.push(
        rule('accept', is('iif', t), is('saddr6', ns.nsAddress6), ...out),
        rule('accept', is('oif', t), is('daddr6', ns.nsAddress6), ESTABLISHED),
      );
    // nothing else to the transit either: transitTail, after every tenant's rules
    rules.push(rule('drop', is('iif', t)));
    return rules;
  }
  if (n.nat)
    rules.push(
      rule('accept', is('iif', b), is('saddr', n.cidr), ...out),
      rule('accept', is('oif', b), is('daddr', n.cidr), ESTABLISHED),
    );
  // IPv6 out of the tenant (NAT66'd or routed): from the /64 out, replies in; nothing starts in
  if (n.ipv6 && n.ipv6.outbound !== 'none')
    rules.push(
      rule('accept', is('iif', b), is('saddr6', n.ipv6.cidr), ...out),
      rule('accept', is('oif', b), is('daddr6', n.ipv6.cidr), ESTABLISHED),
    );
  // not NAT, or not from/to the subnet: never routed (libvirt rejects these too)
  rules.push(rule('drop', is('iif', b)), rule('drop', is('oif', b)));
  return rules;
}

/**
 * Last in the forward chain, what may reach a namespaced tenant's transit: its floating IPs (the
 * host routes them there), from anywhere but a tenant device — every tenant's own rules, above,
 * dropped what its devices send to another's —, then nothing.
 */
function transitTail({ net, ns }: Tenant): Rule[] {
  if (!ns) return [];
  const t = ns.transitVeth;
  const floating = net.network.nat ? floatingOf(net) : [];
  return [...floating.map((f) => rule('accept', is('oif', t), is('daddr', f.floatingIp))), rule('drop', is('oif', t))];
}

/**
 * Destination NAT for the ways in: a tenant's own guests first (hairpin, from its bridge or its
 * namespace's transit; never to its own gateway), then nothing from any other tenant device,
 * then everyone else.
 */
function dnatRules(all: Tenant[]): Rule[] {
  const own = all.flatMap(({ net: n, ns, ways }) => {
    if (!ways.length) return [];
    const dev = is('iif', ns?.transitVeth ?? n.network.bridge);
    return [
      // the own gateway stays the host's (DHCP, DNS, host services), whatever port a forward takes
      ...(ns ? [] : [rule('return', dev, is('daddr', n.network.gateway))]),
      ...ways.map((w) => rule(w.to, dev, ...w.match)),
    ];
  });
  const rest = all.flatMap(({ ways }) => ways.map((w) => rule(w.to, ...w.match)));
  return rest.length ? [...own, rule('return', { field: 'iif', set: TENANT_DEVICES }), ...rest] : [];
}

const keyed = (set: string, key: KeyedRule['key'], verdict: Verdict, ...conds: Cond[]): KeyedRule => ({
  key,
  set,
  conds,
  verdict,
});
/** the device's own row of `set` is not the packet's (devices of `members` only) */
const notOwn = (set: string, key: KeyedRule['key'], members: string, ...conds: Cond[]): KeyedRule => ({
  ...keyed(set, key, 'drop', ...conds),
  not: true,
  members,
});

// What a guest may send to the host itself: replies to what the host started, and on its own
// tenant's gateway address only DHCP, DNS, ping and the network's hostServices. Everything else
// addressed to any of the host's addresses (another tenant's gateway, the uplink's, IPv6) is
// dropped.
const INPUT4: KeyedRule[] = [
  // dnsmasq keys a lease by the message's chaddr, not by the frame's sender: a DHCP message must
  // name the MAC it came from (pinned to its port), or a guest could release or decline its
  // neighbour's lease, or drain the pool with made-up MACs. First, as a renewal's flow is an
  // established one.
  {
    key: ['iif', 'etherSrc', 'dhcpChaddr'],
    set: 'dhcp_clients',
    not: true,
    members: TENANT_DEVICES,
    conds: [is('udpDport', 67)],
    verdict: 'drop',
  },
  keyed(TENANT_DEVICES, ['iif'], 'pass', ESTABLISHED),
  keyed('host_services', ['iif', 'daddr', 'l4proto', 'dport'], 'pass'),
  keyed('bridge_gws', ['iif', 'daddr'], 'pass', is('icmpType', 'echo-request')),
];

// The same for IPv6, on bridges of networks with IPv6: DHCPv6, DNS, ping and the hostServices on
// gateway6, and the neighbour discovery a guest needs of its router (solicitations; the
// advertisements that answer the host's). The host's RAs and NAs leave it, they are not input.
const INPUT6: KeyedRule[] = [
  keyed('host_services6', ['iif', 'daddr6', 'l4proto', 'dport'], 'pass'),
  keyed('bridge_gw6s', ['iif', 'daddr6'], 'pass', is('icmp6Type', 'echo-request')),
  keyed(
    'v6_bridges',
    ['iif'],
    'pass',
    is('icmp6Type', ['nd-router-solicit', 'nd-neighbor-solicit', 'nd-neighbor-advert']),
  ),
];

const inputRules = (ipv6: boolean): KeyedRule[] => [
  ...INPUT4,
  ...(ipv6 ? INPUT6 : []),
  keyed(TENANT_DEVICES, ['iif'], 'drop'),
];

// Per port: its MAC only, its IP only (DHCP and ARP probes before it has one), IPv4 and ARP only;
// never a DHCP server's reply, never ARP claiming its gateway's address. A ladder of single
// checks: what a port may send passes as soon as it is known good.
const PORT_GUARD4: KeyedRule[] = [
  notOwn('port_macs', ['iif', 'etherSrc'], 'ports'),
  keyed('ports', ['iif'], 'drop', is('udpSport', 67)),
  // a DHCP reply from any other port reaches a neighbour's client as well as one from 67
  keyed('ports', ['iif'], 'drop', is('udpDport', 68)),
  keyed('port_gws', ['iif', 'arpSpa'], 'drop'),
  notOwn('port_macs', ['iif', 'arpSha'], 'ports'),
  // an address-less ARP probe (0.0.0.0) and DHCP are allowed before the guest has its address
  keyed('ip_ports', ['iif'], 'pass', is('arpSpa', '0.0.0.0')),
  notOwn('port_ips', ['iif', 'arpSpa'], 'ip_ports'),
  keyed('ports', ['iif'], 'pass', is('etherType', 'arp')),
  keyed(
    'ip_ports',
    ['iif'],
    'pass',
    is('saddr', '0.0.0.0'),
    is('daddr', '255.255.255.255'),
    is('udpSport', 68),
    is('udpDport', 67),
  ),
  notOwn('port_ips', ['iif', 'saddr'], 'ip_ports'),
  keyed('ports', ['iif'], 'pass', is('etherType', 'ip')),
];

const IP6 = is('etherType', 'ip6');
const ND_MESSAGES = [
  'nd-router-solicit',
  'nd-router-advert',
  'nd-neighbor-solicit',
  'nd-neighbor-advert',
  'nd-redirect',
];

// IPv6, on ports of networks with IPv6 (ip6_ports; any other port's IPv6 meets the last drop):
// never a router's message (RA guard: advertisements, redirects), never a DHCPv6 server's or
// relay's, a neighbour advertisement only for its own addresses, and only its own addresses as
// source — its link-local one, its SLAAC one and the one pinned — but for the unspecified
// address a NIC without an address yet uses: duplicate address detection (a neighbour
// solicitation, the MLD report that joins its group) and a router solicitation (RFC 4861 6.3.7).
const PORT_GUARD6: KeyedRule[] = [
  // neighbour discovery is never fragmented (RFC 6980): a first fragment that ends before the
  // target would pass the target's check unread, and a guest that does not drop fragmented ND
  // (Linux's suppress_frag_ndisc=0) would take the reassembled forgery
  keyed('ip6_ports', ['iif'], 'drop', is('icmp6Type', ND_MESSAGES), is('fragment', 'yes')),
  keyed('ports', ['iif'], 'drop', is('icmp6Type', ['nd-router-advert', 'nd-redirect'])),
  keyed('ports', ['iif'], 'drop', IP6, is('udpSport', 547)),
  keyed('ports', ['iif'], 'drop', IP6, is('udpDport', 546)),
  notOwn('port_nd', ['iif', 'ndTarget'], 'ip6_ports', is('icmp6Type', 'nd-neighbor-advert')),
  keyed(
    'ip6_ports',
    ['iif'],
    'pass',
    is('saddr6', '::'),
    is('icmp6Type', ['nd-router-solicit', 'nd-neighbor-solicit', 'mld2-listener-report']),
  ),
  notOwn('port_ip6s', ['iif', 'saddr6'], 'ip6_ports'),
  keyed('ip6_ports', ['iif'], 'pass', is('etherType', 'ip6')),
];

const portGuard = (ipv6: boolean): KeyedRule[] => [
  ...PORT_GUARD4,
  ...(ipv6 ? PORT_GUARD6 : []),
  keyed('ports', ['iif'], 'drop'),
];

// A tenant's bridges on several hosts are one L2 segment (its VLAN or VXLAN), yet each host has
// the gateway address and a dnsmasq of its own for its own guests (as Neutron's distributed
// routers keep theirs): DHCP and ARP for the gateway address never cross a segment uplink, so a
// guest is answered only by its own host.
const uplinkGuard = (dev: 'iif' | 'oif', ipv6: boolean): KeyedRule[] => [
  keyed('uplinks', [dev], 'drop', is('udpDport', [67, 68])),
  keyed('uplink_gws', [dev, 'arpTpa'], 'drop'),
  keyed('uplink_gws', [dev, 'arpSpa'], 'drop'),
  // and for IPv6 (each host is its guests' router): router solicitations and advertisements,
  // DHCPv6, and neighbour discovery of the gateway6 address — solicitations sent to it (unicast
  // or its solicited-node group) and the advertisements it sends (a host advertises an address
  // of its own from that address, RFC 4861 7.2.4; guests cannot, the port guard sees to that).
  // By addresses, not by the target's bytes: a match every backend has (ebtables reads no ICMPv6
  // payload), and one that also holds for the host's own messages, which no IP hook can tie to
  // a bridge port.
  ...(ipv6
    ? [
        keyed('uplinks', [dev], 'drop', is('icmp6Type', ['nd-router-solicit', 'nd-router-advert', 'nd-redirect'])),
        keyed('uplinks', [dev], 'drop', IP6, is('udpDport', [546, 547])),
        keyed('uplink_gw6_groups', [dev, 'daddr6'], 'drop', is('icmp6Type', 'nd-neighbor-solicit')),
        keyed('uplink_gw6s', [dev, 'saddr6'], 'drop', is('icmp6Type', 'nd-neighbor-advert')),
      ]
    : []),
];

/** The underlay addresses of the host's VXLAN segments: their peers, groups and local addresses. */
function underlayOf(state: HostState): string[] {
  const all = state.networks.flatMap((n) => {
    const seg = n.network.segment;
    return seg.type === 'vxlan' ? [...(seg.remotes ?? []), seg.group, seg.local] : [];
  });
  return [...new Set(all.filter((a): a is string => a !== undefined))].sort();
}

/**
 * A VXLAN device decapsulates whatever reaches its port with its VNI, from anyone: the host's
 * VXLAN port takes packets from its unicast segments' peers only. A segment that finds its peers
 * by multicast (`group`) cannot be held to a list: with one, the port stays open (README).
 */
function overlayRules(state: HostState): Rule[] {
  const segments = state.networks.map((n) => n.network.segment).filter((s) => s.type === 'vxlan');
  if (segments.length === 0 || segments.some((s) => s.group !== undefined)) return [];
  const peers = [...new Set(segments.flatMap((s) => s.remotes ?? []))].sort();
  return [
    ...peers.map((p) => rule('pass', is('udpDport', VXLAN_PORT), is('saddr', p))),
    rule('drop', is('udpDport', VXLAN_PORT)),
  ];
}

function ipSets(nets: HostNetwork[], spaces: TenantNamespace[]): Record<string, RowSet> {
  // a namespaced tenant's gateway and its services are in its namespace, not on the host
  const local = nets.filter((n) => !n.network.namespace);
  const clients = (n: HostNetwork) => [...n.ports.map((p) => p.mac), ...(n.dhcpClients ?? [])];
  return {
    // a namespaced tenant's transit is a tenant device like its bridge: no tenant reaches another's
    [TENANT_DEVICES]: {
      fields: ['iif'],
      rows: [...nets.map((n) => [n.network.bridge]), ...spaces.map((s) => [s.transitVeth])],
    },
    bridge_gws: { fields: ['iif', 'daddr'], rows: local.map((n) => [n.network.bridge, n.network.gateway]) },
    host_services: {
      fields: ['iif', 'daddr', 'l4proto', 'dport'],
      rows: local.flatMap((n) => hostServicesOf(n).map((s) => [n.network.bridge, s.address, s.protocol, s.port])),
    },
    // each client's own MAC, as the frame's sender and as the message's chaddr
    dhcp_clients: {
      fields: ['iif', 'etherSrc', 'dhcpChaddr'],
      rows: local.flatMap((n) => clients(n).map((m) => [n.network.bridge, m, m])),
    },
    ...(nets.some((n) => n.network.ipv6) ? ipv6Sets(local, spaces) : {}),
  };
}

/**
 * A namespaced tenant's gateway6 and services are in its namespace: the host has none of them,
 * only neighbour discovery with the namespace over its transit (`v6_bridges` holds the transit).
 */
function ipv6Sets(local: HostNetwork[], spaces: TenantNamespace[]): Record<string, RowSet> {
  const v6 = local.filter((n) => n.network.ipv6);
  const transits = spaces.filter((s) => s.nsAddress6).map((s) => [s.transitVeth]);
  return {
    v6_bridges: { fields: ['iif'], rows: [...v6.map((n) => [n.network.bridge]), ...transits] },
    bridge_gw6s: { fields: ['iif', 'daddr6'], rows: v6.map((n) => [n.network.bridge, n.network.ipv6!.gateway]) },
    host_services6: {
      fields: ['iif', 'daddr6', 'l4proto', 'dport'],
      rows: v6.flatMap((n) => hostServices6Of(n).map((s) => [n.network.bridge, s.address, s.protocol, s.port])),
    },
  };
}

function portSets(nets: HostNetwork[]): Record<string, RowSet> {
  const ports = nets.flatMap((n) => n.ports.map((p) => ({ ...p, gateway: n.network.gateway })));
  const withIp = ports.filter((p) => p.ip);
  const own6 = nets.flatMap((n) =>
    n.ports.flatMap((p) => ipv6Sources(p.mac, n.network.ipv6, p.ip6).map((a) => [p.name, a])),
  );
  const v6: Record<string, RowSet> = nets.some((n) => n.network.ipv6)
    ? {
        ip6_ports: { fields: ['iif'], rows: [...new Set(own6.map(([p]) => p!))].map((p) => [p]) } as RowSet,
        port_ip6s: { fields: ['iif', 'saddr6'], rows: own6 } as RowSet,
        port_nd: { fields: ['iif', 'ndTarget'], rows: own6 } as RowSet,
      }
    : {};
  return {
    ...v6,
    ports: { fields: ['iif'], rows: ports.map((p) => [p.name]) },
    ip_ports: { fields: ['iif'], rows: withIp.map((p) => [p.name]) },
    port_macs: { fields: ['iif', 'etherSrc'], rows: ports.map((p) => [p.name, p.mac]) },
    port_ips: { fields: ['iif', 'saddr'], rows: withIp.map((p) => [p.name, p.ip!]) },
    port_gws: { fields: ['iif', 'saddr'], rows: ports.map((p) => [p.name, p.gateway]) },
  };
}

const uplinkSets = (uplinks: Uplink[]): Record<string, RowSet> => ({
  uplinks: { fields: ['iif'], rows: uplinks.map((u) => [u.name]) },
  uplink_gws: { fields: ['iif', 'saddr'], rows: uplinks.map((u) => [u.name, u.gateway]) },
  ...(uplinks.some((u) => u.gateway6)
    ? {
        uplink_gw6s: {
          fields: ['iif', 'saddr6'],
          rows: uplinks.flatMap((u) => (u.gateway6 ? [[u.name, u.gateway6]] : [])),
        } as RowSet,
        uplink_gw6_groups: {
          fields: ['iif', 'daddr6'],
          rows: uplinks.flatMap((u) =>
            u.gateway6 ? [u.gateway6, solicitedNodeOf(u.gateway6)].map((a) => [u.name, a]) : [],
          ),
        } as RowSet,
      }
    : {}),
});

/** The tenant policy of a host state. */
export function tenantPolicy(state: HostState): TenantPolicy {
  const nets = state.networks;
  const spaces = namespacesOf(state);
  const tenants = nets.map((net): Tenant => {
    const ns = spaces.find((s) => s.tenant === net.network.tenant);
    return { net, ns, ways: waysIn(net, ns) };
  });
  const hasPorts = nets.some((n) => n.ports.length > 0);
  const uplinks = uplinksOf(state);
  const underlay = underlayOf(state);
  const rates = packetRates(nets);
  const ipv6 = nets.some((n) => n.network.ipv6);
  return {
    any: nets.length > 0,
    ipv6,
    nat: [
      // frames bridged on a namespaced tenant's bridge pass the NAT hook too (br_netfilter): no
      // other tenant's masquerade may take them, whatever their addresses
      ...spaces.map((s) => rule('return', is('oif', s.net.network.bridge))),
      ...tenants.flatMap(natRules),
    ],
    forward: [...tenants.flatMap((t) => forwardRules(t, underlay)), ...tenants.flatMap(transitTail)],
    input: { devices: TENANT_DEVICES, rules: inputRules(ipv6) },
    overlay: overlayRules(state),
    ...(nets.length ? { flowLimits: FLOW_LIMITS } : {}),
    packetRates: rates.map(({ rate, burst, set }) => ({ rate, burst, set })),
    // a tenant's bridged frames tracked apart from any other's with the same addresses
    zones: spaces.map((s) => rule({ zone: s.zone }, is('iif', s.net.network.bridge))),
    dnat: dnatRules(tenants),
    dnatLocal: tenants.flatMap(({ ways }) => ways.map((w) => rule(w.to, ...w.match))),
    bridgeIn: [
      ...(hasPorts ? [{ devices: 'ports', rules: portGuard(ipv6) }] : []),
      ...(uplinks.length ? [{ devices: 'uplinks', rules: uplinkGuard('iif', ipv6) }] : []),
    ],
    bridgeOut: uplinks.length ? [{ devices: 'uplinks', rules: uplinkGuard('oif', ipv6) }] : [],
    ipSets: nets.length ? ipSets(nets, spaces) : {},
    bridgeSets: {
      ...(hasPorts ? portSets(nets) : {}),
      ...(uplinks.length ? uplinkSets(uplinks) : {}),
      // each rate's ports
      ...Object.fromEntries(rates.map((r) => [r.set, { fields: ['iif'], rows: r.ports.map((p) => [p]) } as RowSet])),
    },
    namespaces: spaces,
  };
}
